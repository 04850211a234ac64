import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  convertCheckpoint,
  initDijiangTensors,
  initWeights,
  loadBundle,
  loadTokenizer,
  oracleLogits,
  presetConfig,
  readHfCheckpoint,
  readSafetensorsCheckpoint,
  writeSafetensors,
  writeShardedSafetensors,
} from '#model';
import { openBundleSession, runChunk } from '#engine/runtime';
import type { AttentionKind, ModelConfig, SafetensorsDtype, Weights } from '#model';

const TINY = presetConfig('tiny', 'dijiang');

/** The Hugging Face config.json of a GPT-NeoX checkpoint with the given model shape. */
function hfConfigJson(
  config: ModelConfig,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    architectures: ['GPTNeoXForCausalLM'],
    model_type: 'gpt_neox',
    hidden_size: config.hiddenSize,
    num_attention_heads: config.numHeads,
    num_hidden_layers: config.numLayers,
    intermediate_size: config.intermediateSize,
    vocab_size: config.vocabSize,
    max_position_embeddings: config.maxPositionEmbeddings,
    rotary_pct: config.rotaryPct,
    rotary_emb_base: config.rotaryBase,
    layer_norm_eps: config.layerNormEps,
    use_parallel_residual: true,
    hidden_act: 'gelu',
    tie_word_embeddings: false,
    torch_dtype: 'float32',
    ...overrides,
  };
}

/** A small deterministic generator so every tensor of the synthetic checkpoint is non-trivial. */
function uniformSource(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32 - 0.5;
  };
}

/**
 * A "trained" checkpoint: the seeded model with every tensor perturbed (LayerNorm and GroupNorm
 * gains, biases, decay tables that no longer follow g^t), so a misplaced tensor changes logits.
 */
function trainedWeights(config: ModelConfig, seed: number, withDijiang: boolean): Weights {
  const next = uniformSource(seed);
  const weights: Weights = new Map();
  for (const [name, tensor] of initWeights(config, seed)) {
    const isDijiang = /attention\.(?:proj_matrix|W_G|group_norm\.\w+|D1|D2)$/.test(name);
    if (isDijiang && !withDijiang) continue;
    const data = Float32Array.from(tensor.data, (value) => {
      if (name.endsWith('.D1') || name.endsWith('.D2')) return value * (1 + 0.2 * next());
      if (name.endsWith('proj_matrix')) return value;
      return value + 0.05 * next();
    });
    weights.set(name, { shape: tensor.shape, data });
  }
  return weights;
}

interface CheckpointSpec {
  readonly dtype: SafetensorsDtype;
  /** 1 writes model.safetensors; more writes shards and an index. */
  readonly shards: number;
  readonly config?: Record<string, unknown>;
}

async function writeCheckpoint(
  directory: string,
  weights: Weights,
  spec: CheckpointSpec,
): Promise<void> {
  await mkdir(directory, { recursive: true });
  await writeFile(join(directory, 'config.json'), JSON.stringify(hfConfigJson(TINY, spec.config)));
  if (spec.shards === 1) {
    await writeSafetensors(join(directory, 'model.safetensors'), weights, {
      dtype: spec.dtype,
      metadata: { format: 'pt' },
    });
  } else {
    await writeShardedSafetensors(directory, weights, { dtype: spec.dtype, shards: spec.shards });
  }
}

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'convert-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let caseNumber = 0;
async function checkpointWith(weights: Weights, spec: CheckpointSpec): Promise<string> {
  const directory = join(root, `case-${caseNumber++}`);
  await writeCheckpoint(directory, weights, spec);
  return directory;
}

describe('bad checkpoints are refused with the tensor and what was expected', () => {
  const plain = trainedWeights(TINY, 3, false);
  const trained = trainedWeights(TINY, 3, true);
  const without = (weights: Weights, name: string): Weights =>
    new Map([...weights].filter(([key]) => key !== name));
  const replaced = (
    weights: Weights,
    name: string,
    shape: readonly number[],
    data: Float32Array,
  ): Weights =>
    new Map([...weights].map(([key, tensor]) => [key, key === name ? { shape, data } : tensor]));

  it('a missing tensor', async () => {
    const directory = await checkpointWith(
      without(plain, 'gpt_neox.layers.1.mlp.dense_4h_to_h.bias'),
      { dtype: 'F32', shards: 1 },
    );
    await expect(readHfCheckpoint(directory)).rejects.toThrow(
      `checkpoint ${directory}: missing tensor gpt_neox.layers.1.mlp.dense_4h_to_h.bias (expected shape [128])`,
    );
  });

  it('a tensor listed in the index but missing from its shard', async () => {
    const directory = await checkpointWith(plain, { dtype: 'F32', shards: 2 });
    const indexFile = join(directory, 'model.safetensors.index.json');
    const index = JSON.parse(await readFile(indexFile, 'utf8')) as {
      weight_map: Record<string, string>;
    };
    const shard = index.weight_map['embed_out.weight'] ?? '';
    await writeFile(
      indexFile,
      JSON.stringify({
        weight_map: { ...index.weight_map, 'gpt_neox.layers.0.attention.W_G': shard },
      }),
    );
    await expect(readHfCheckpoint(directory)).rejects.toThrow(
      `tensor "gpt_neox.layers.0.attention.W_G" is listed in model.safetensors.index.json but missing from the shard`,
    );
  });

  it('a wrong shape', async () => {
    const weights = replaced(plain, 'embed_out.weight', [256, 128], new Float32Array(256 * 128));
    const directory = await checkpointWith(weights, { dtype: 'F32', shards: 1 });
    await expect(readHfCheckpoint(directory)).rejects.toThrow(
      'tensor embed_out.weight has shape [256, 128] (32768 values), expected [257, 128]',
    );
  });

  it('an unknown dtype', async () => {
    const directory = await checkpointWith(plain, { dtype: 'F32', shards: 1 });
    const file = join(directory, 'model.safetensors');
    const bytes = await readFile(file);
    // Relabel the first tensor's F32 as I32 (same width, so the offsets stay consistent).
    const at = bytes.indexOf('"dtype":"F32"');
    bytes.write('"dtype":"I32"', at);
    await writeFile(file, bytes);
    await expect(readHfCheckpoint(directory)).rejects.toThrow(
      /tensor "gpt_neox\.embed_in\.weight" has dtype I32; supported: F32, F16, BF16/,
    );
  });

  it('non-finite values, naming the position', async () => {
    const data = Float32Array.from(
      plain.get('gpt_neox.layers.0.attention.dense.weight')?.data ?? [],
    );
    data[3 * 128 + 5] = NaN;
    const directory = await checkpointWith(
      replaced(plain, 'gpt_neox.layers.0.attention.dense.weight', [128, 128], data),
      {
        dtype: 'F32',
        shards: 1,
      },
    );
    await expect(readHfCheckpoint(directory)).rejects.toThrow(
      'tensor gpt_neox.layers.0.attention.dense.weight has a non-finite value NaN at [3, 5]',
    );
    // The released decay initialisation stored as F16: D2 = g^-t passes 65504 for head 0 and
    // becomes infinity, first at t = ceil(ln(65520) / -ln(31/32)) = 350.
    const released = initWeights(TINY, 1);
    const halfDirectory = await checkpointWith(released, { dtype: 'F16', shards: 1 });
    const firstOverflow = Math.ceil(Math.log(65520) / -Math.log(31 / 32));
    await expect(readHfCheckpoint(halfDirectory)).rejects.toThrow(
      `tensor gpt_neox.layers.0.attention.D2 has a non-finite value Infinity at [0, 0, ${firstOverflow}, 0]`,
    );
  });

  it('a non-positive D1 entry, naming layer, head and position', async () => {
    const name = 'gpt_neox.layers.1.attention.D1';
    const data = Float32Array.from(trained.get(name)?.data ?? []);
    data[2 * 2048 + 7] = 0;
    const directory = await checkpointWith(replaced(trained, name, [1, 4, 2048, 1], data), {
      dtype: 'F32',
      shards: 1,
    });
    await expect(readHfCheckpoint(directory)).rejects.toThrow(
      /layer 1, head 2, position 7\): D1 entries must be positive/,
    );
  });

  it('only some DiJiang tensors, or DiJiang tensors with softmax attention', async () => {
    const partial = await checkpointWith(
      without(trained, 'gpt_neox.layers.1.attention.group_norm.bias'),
      {
        dtype: 'F32',
        shards: 1,
      },
    );
    await expect(readHfCheckpoint(partial)).rejects.toThrow(
      'missing tensor gpt_neox.layers.1.attention.group_norm.bias: the checkpoint has some DiJiang tensors but not all (1 of 12 missing)',
    );
    const full = await checkpointWith(trained, { dtype: 'F32', shards: 1 });
    await expect(readHfCheckpoint(full, { attention: 'softmax' })).rejects.toThrow(
      'the checkpoint has DiJiang tensors: converting it with softmax attention would discard them',
    );
  });

  it('an unexpected tensor, and a config the model cannot run', async () => {
    const extra = new Map(plain);
    extra.set('gpt_neox.layers.0.attention.lora_A', { shape: [2], data: new Float32Array(2) });
    await expect(
      readHfCheckpoint(await checkpointWith(extra, { dtype: 'F32', shards: 1 })),
    ).rejects.toThrow(
      'unexpected tensor gpt_neox.layers.0.attention.lora_A: not a GPT-NeoX or DiJiang parameter',
    );
    const sequential = await checkpointWith(plain, {
      dtype: 'F32',
      shards: 1,
      config: { use_parallel_residual: false },
    });
    await expect(readHfCheckpoint(sequential)).rejects.toThrow(
      /use_parallel_residual must be true/,
    );
    const pythiaVocabulary = await checkpointWith(plain, {
      dtype: 'F32',
      shards: 1,
      config: { vocab_size: 50304 },
    });
    await expect(readHfCheckpoint(pythiaVocabulary)).rejects.toThrow(
      'no tokenizer.json, and vocab_size 50304 is not the byte-level vocabulary (257)',
    );
  });
});

describe('reading checkpoints', () => {
  it('ignores recomputable buffers and fills DiJiang tensors by the seeded transform step', async () => {
    const weights = trainedWeights(TINY, 4, false);
    weights.set('gpt_neox.layers.0.attention.rotary_emb.inv_freq', {
      shape: [4],
      data: new Float32Array(4),
    });
    weights.set('gpt_neox.layers.0.attention.masked_bias', {
      shape: [],
      data: new Float32Array([-1e9]),
    });
    const directory = await checkpointWith(weights, { dtype: 'BF16', shards: 2 });
    const checkpoint = await readHfCheckpoint(directory, { seed: 9 });
    expect(checkpoint.dijiangSource).toBe('transform');
    expect(checkpoint.config).toEqual(TINY);
    const expected = initDijiangTensors(TINY, 9);
    for (const [name, tensor] of expected)
      expect(checkpoint.weights.get(name)?.data, name).toEqual(tensor.data);
    expect(checkpoint.weights.has('gpt_neox.layers.0.attention.rotary_emb.inv_freq')).toBe(false);
    const stored = await readSafetensorsCheckpoint(directory);
    expect(checkpoint.weights.get('embed_out.weight')?.data).toEqual(
      stored.get('embed_out.weight')?.data,
    );
  });
});

/** A byte-level tokenizer.json without merges: GPT-2's 256 byte characters, then end of text. */
function byteTokenizerJson(): unknown {
  const printable = (byte: number): boolean =>
    (byte >= 0x21 && byte <= 0x7e) ||
    (byte >= 0xa1 && byte <= 0xac) ||
    (byte >= 0xae && byte <= 0xff);
  const vocab: Record<string, number> = {};
  let shifted = 0;
  for (let byte = 0; byte < 256; byte++) {
    vocab[String.fromCodePoint(printable(byte) ? byte : 256 + shifted++)] = byte;
  }
  vocab['<|endoftext|>'] = 256;
  const byteLevel = {
    type: 'ByteLevel',
    add_prefix_space: false,
    trim_offsets: true,
    use_regex: true,
  };
  return {
    version: '1.0',
    added_tokens: [
      {
        id: 256,
        content: '<|endoftext|>',
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      },
    ],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: byteLevel,
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, fuse_unk: false, vocab, merges: [] },
  };
}

/** Rows of one batch share the ids and stop at different lengths (right padding after them). */
const ROW_LENGTHS = [5, 9, 12];
const IDS = Array.from({ length: 12 }, (_, i) => (i * 37 + 11) % 257);

function expectClose(actual: Float32Array, expected: Float64Array, label: string): void {
  expect(actual.length, label).toBe(expected.length);
  let worst = { index: -1, excess: 0 };
  for (let i = 0; i < expected.length; i++) {
    const want = expected[i] ?? NaN;
    const excess = Math.abs((actual[i] ?? NaN) - want) - (1e-5 + 1e-4 * Math.abs(want));
    if (!(excess <= worst.excess)) worst = { index: i, excess };
  }
  expect(
    worst.index,
    `${label}: worst element ${worst.index} exceeds rtol 1e-4 / atol 1e-5 by ${worst.excess}`,
  ).toBe(-1);
}

interface ConversionCase {
  readonly title: string;
  readonly spec: CheckpointSpec;
  readonly withDijiang: boolean;
  readonly attention: AttentionKind;
  readonly seed?: number;
  readonly tokenizer?: boolean;
}

const CONVERSIONS: ConversionCase[] = [
  {
    title: 'F32, single file, trained DiJiang tensors',
    spec: { dtype: 'F32', shards: 1 },
    withDijiang: true,
    attention: 'dijiang',
  },
  {
    title: 'BF16, 3 shards, trained DiJiang tensors',
    spec: { dtype: 'BF16', shards: 3 },
    withDijiang: true,
    attention: 'dijiang',
  },
  {
    title: 'F16, single file, plain: transform step (seed 7)',
    spec: { dtype: 'F16', shards: 1 },
    withDijiang: false,
    attention: 'dijiang',
    seed: 7,
  },
  {
    title: 'F16, 2 shards, plain with tokenizer.json: transform step (default seed 0)',
    spec: { dtype: 'F16', shards: 2 },
    withDijiang: false,
    attention: 'dijiang',
    tokenizer: true,
  },
  {
    title: 'BF16, single file, plain: softmax attention kept',
    spec: { dtype: 'BF16', shards: 1 },
    withDijiang: false,
    attention: 'softmax',
  },
  {
    title: 'F32, 2 shards, plain: softmax attention kept',
    spec: { dtype: 'F32', shards: 2 },
    withDijiang: false,
    attention: 'softmax',
  },
];

describe('converted bundles compute what the float64 oracle computes on the stored weights', () => {
  it.each(CONVERSIONS)('$title', async ({ spec, withDijiang, attention, seed, tokenizer }) => {
    const directory = await checkpointWith(trainedWeights(TINY, 21, withDijiang), spec);
    if (tokenizer === true)
      await writeFile(join(directory, 'tokenizer.json'), JSON.stringify(byteTokenizerJson()));
    const out = join(root, `bundle-${caseNumber++}`);
    const result = await convertCheckpoint(directory, out, {
      attention,
      ...(seed === undefined ? {} : { seed }),
    });
    expect(result.dijiangSource).toBe(
      withDijiang ? 'checkpoint' : attention === 'dijiang' ? 'transform' : 'none',
    );
    const config: ModelConfig = {
      ...TINY,
      attention,
      tokenizer: tokenizer === true ? 'hf' : 'byte',
    };
    expect(result.manifest.config).toEqual(config);
    expect(result.manifest.id).toBe(`bundle-${caseNumber - 1}`);

    // The oracle sees the checkpoint as stored (already rounded to its dtype), plus the
    // transform step's tensors for the seed the conversion was asked to use.
    const weights = await readSafetensorsCheckpoint(directory);
    if (result.dijiangSource === 'transform') {
      for (const [name, tensor] of initDijiangTensors(config, seed ?? 0)) weights.set(name, tensor);
    }
    const expected = oracleLogits(config, weights, IDS, {
      logitPositions: ROW_LENGTHS.map((length) => length - 1),
    });

    const bundle = await loadBundle(out);
    const session = await openBundleSession(bundle, { intraOpNumThreads: 1 });
    try {
      const { logits } = await runChunk(session, config, {
        inputIds: ROW_LENGTHS.flatMap(() => IDS),
        batch: ROW_LENGTHS.length,
        chunk: IDS.length,
        startPos: ROW_LENGTHS.map(() => 0),
        validLen: ROW_LENGTHS,
      });
      expectClose(logits, expected, 'logits');
    } finally {
      await session.release();
    }

    if (tokenizer === true) {
      expect(await readFile(join(out, 'tokenizer.json'), 'utf8')).toBe(
        await readFile(join(directory, 'tokenizer.json'), 'utf8'),
      );
      expect((await loadTokenizer('hf', out)).encode('hi')).toEqual([0x68, 0x69]);
    }
  });
});

describe('chat templates of checkpoints (tokenizer_config.json)', () => {
  /** A ChatML template as models on the Hub ship it. */
  const CHATML =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  const OVERRIDE =
    "{{ bos_token }}{% for message in messages %}{{ message['content'] }}{% endfor %}";
  /** How transformers saves special tokens it was given as AddedToken objects. */
  const addedToken = (content: string) => ({
    __type: 'AddedToken',
    content,
    lstrip: false,
    normalized: false,
    rstrip: false,
    single_word: false,
  });

  async function checkpointWithTokenizerConfig(tokenizerConfig: unknown): Promise<string> {
    const directory = await checkpointWith(trainedWeights(TINY, 5, false), {
      dtype: 'F32',
      shards: 1,
    });
    if (tokenizerConfig !== undefined) {
      await writeFile(
        join(directory, 'tokenizer_config.json'),
        typeof tokenizerConfig === 'string' ? tokenizerConfig : JSON.stringify(tokenizerConfig),
      );
    }
    return directory;
  }

  it('bundles the template string with AddedToken-object BOS and EOS', async () => {
    const directory = await checkpointWithTokenizerConfig({
      add_bos_token: true,
      bos_token: addedToken('<s>'),
      eos_token: addedToken('</s>'),
      chat_template: CHATML,
      model_max_length: 2048,
      tokenizer_class: 'GPTNeoXTokenizer',
    });
    const out = join(root, `bundle-${caseNumber++}`);
    const result = await convertCheckpoint(directory, out);
    const expected = { template: CHATML, bosToken: '<s>', eosToken: '</s>' };
    expect(result.manifest.chat).toEqual(expected);
    expect((await loadBundle(out)).manifest.chat).toEqual(expected);
  });

  it('takes the template named "default" from a list, and plain-string special tokens', async () => {
    const directory = await checkpointWithTokenizerConfig({
      bos_token: '<|endoftext|>',
      eos_token: null,
      chat_template: [
        { name: 'tool_use', template: OVERRIDE },
        { name: 'default', template: CHATML },
      ],
    });
    expect((await readHfCheckpoint(directory)).chat).toEqual({
      template: CHATML,
      bosToken: '<|endoftext|>',
    });
  });

  it("a given template replaces the checkpoint's and keeps its special tokens", async () => {
    const withString = await checkpointWithTokenizerConfig({
      bos_token: addedToken('<s>'),
      eos_token: '</s>',
      chat_template: CHATML,
    });
    expect((await readHfCheckpoint(withString, { chatTemplate: OVERRIDE })).chat).toEqual({
      template: OVERRIDE,
      bosToken: '<s>',
      eosToken: '</s>',
    });
    // A list without "default" needs a given template, and is fine with one.
    const withoutDefault = await checkpointWithTokenizerConfig({
      chat_template: [{ name: 'tool_use', template: CHATML }],
    });
    await expect(readHfCheckpoint(withoutDefault)).rejects.toThrow(
      `checkpoint ${withoutDefault}: tokenizer_config.json: chat_template lists no template named "default" (it has "tool_use"): give the template to use with --chat-template`,
    );
    expect((await readHfCheckpoint(withoutDefault, { chatTemplate: OVERRIDE })).chat).toEqual({
      template: OVERRIDE,
    });
    // Without tokenizer_config.json: no template, unless one is given.
    const without = await checkpointWithTokenizerConfig(undefined);
    expect((await readHfCheckpoint(without)).chat).toBeUndefined();
    const out = join(root, `bundle-${caseNumber++}`);
    const result = await convertCheckpoint(without, out, { chatTemplate: OVERRIDE });
    expect((await loadBundle(out)).manifest.chat).toEqual({ template: OVERRIDE });
    expect(result.manifest.chat).toEqual({ template: OVERRIDE });
  });

  it.each([
    ['not JSON', '{"chat_template": ', /tokenizer_config\.json is not valid JSON/],
    [
      'a special token that is neither a string nor an AddedToken',
      { bos_token: 1, chat_template: CHATML },
      /tokenizer_config\.json: ✖ expected a string or an object with a string "content" \(an AddedToken\)\n {2}→ at bos_token/,
    ],
    [
      'a chat_template of the wrong type',
      { chat_template: { default: CHATML } },
      /tokenizer_config\.json: ✖ expected a template string or a list of \{"name", "template"\} objects\n {2}→ at chat_template/,
    ],
    [
      'a chat_template that is not Jinja',
      { chat_template: '{% if messages %}never closed' },
      /tokenizer_config\.json: chat_template does not parse as Jinja: /,
    ],
  ])('a malformed tokenizer_config.json is refused: %s', async (_title, config, message) => {
    const directory = await checkpointWithTokenizerConfig(config);
    const failure = readHfCheckpoint(directory);
    await expect(failure).rejects.toThrow(`checkpoint ${directory}: `);
    await expect(failure).rejects.toThrow(message);
  });
});
