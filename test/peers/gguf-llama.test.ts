/**
 * The GGUF export against llama.cpp itself (node-llama-cpp's prebuilt CPU binary): its GGUF
 * reader parses what we write, and llama.cpp's log-probs for a prompt equal the float64 oracle's
 * on the same weights, per weight type within the tolerance bench/llama-peer.ts documents. The
 * peers benchmark repeats the check on its own shapes before timing anything.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readGgufFileInfo, type Llama } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createPresetBundle,
  GGUF_FILE_TYPES,
  gptNeoxGgufMetadata,
  gptNeoxGgufTensors,
  initWeights,
  presetConfig,
  quantizeQ4_0,
  quantizeQ8_0,
  float16BitsToNumber,
  writeBundle,
  writeGguf,
  writeGptNeoxGguf,
  writeSafetensors,
  type GgufValue,
} from '#model';
import { testWeights, randomIds } from '../../libs/model/test/support.js';
import { checkAgainstOracle, openLlama } from '../../bench/llama-peer.js';

const cli = fileURLToPath(new URL('../../bin/dijiang.js', import.meta.url));
const config = presetConfig('small', 'softmax');
const weights = testWeights(config, 3);
const ids = randomIds(48, config.vocabSize, 5);
const THREADS = 2;
let dir: string;
let llama: Llama;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dijiang-gguf-'));
  llama = await openLlama(THREADS);
});
afterAll(async () => {
  await llama.dispose();
  await rm(dir, { recursive: true, force: true });
});

describe('GGUF export', () => {
  it("writes a file node-llama-cpp's reader parses: gptneox metadata and tensor table", async () => {
    const path = join(dir, 'small-q8_0.gguf');
    await writeGptNeoxGguf(path, config, weights, { name: 'small', type: 'q8_0' });
    const info = await readGgufFileInfo(path, { logWarnings: false });
    expect(info.version).toBe(3);
    const metadata = info.metadata as unknown as Record<string, Record<string, unknown>>;
    expect(metadata.general?.architecture).toBe('gptneox');
    expect(metadata.gptneox).toMatchObject({
      block_count: config.numLayers,
      embedding_length: config.hiddenSize,
      feed_forward_length: config.intermediateSize,
      use_parallel_residual: true,
      rope: { dimension_count: 8, freq_base: 10000 },
      attention: { head_count: config.numHeads },
    });
    const tensors = info.fullTensorInfo ?? [];
    expect(tensors).toHaveLength(4 + 12 * config.numLayers);
    const qkv = tensors.find((tensor) => tensor.name === 'blk.0.attn_qkv.weight');
    expect(qkv?.dimensions.map(Number)).toEqual([config.hiddenSize, 3 * config.hiddenSize]);
    expect(qkv?.ggmlType).toBe(8);
    expect(tensors.find((tensor) => tensor.name === 'blk.0.attn_qkv.bias')?.ggmlType).toBe(0);
    expect(tensors.every((tensor) => Number(tensor.offset) % 32 === 0)).toBe(true);
  });

  it('writes headers far larger than its first buffer (a Pythia-sized vocabulary)', async () => {
    const path = join(dir, 'vocabulary.gguf');
    const tokens = Array.from({ length: 50304 }, (_unused, id) => `<|id_${id}|>`);
    await writeGguf(
      path,
      new Map<string, GgufValue>([
        ['general.architecture', { type: 'string', value: 'gptneox' }],
        ['tokenizer.ggml.tokens', { type: 'strings', value: tokens }],
        ['tokenizer.ggml.token_type', { type: 'i32s', value: tokens.map((_t, id) => id % 5) }],
      ]),
      [
        {
          name: 'x',
          dims: [64, 2],
          type: 'f32',
          data: Float32Array.from({ length: 128 }, (_v, i) => i),
        },
      ],
    );
    const info = await readGgufFileInfo(path, { logWarnings: false });
    const tokenizer = info.metadata.tokenizer.ggml;
    expect(tokenizer.tokens).toEqual(tokens);
    expect(tokenizer.token_type.slice(0, 6)).toEqual([0, 1, 2, 3, 4, 0]);
    const bytes = await readFile(path);
    const offset = Number(info.tensorInfo?.[0]?.fileOffset ?? -1);
    expect(
      new Float32Array(
        bytes.buffer.slice(bytes.byteOffset + offset, bytes.byteOffset + offset + 512),
      )[127],
    ).toBe(127);
  });

  it('quantises q8_0 and q4_0 blocks as ggml decodes them: within half a step of each value', () => {
    const values = Float32Array.from(randomIds(256, 2001, 9), (id) => (id - 1000) / 997);
    for (const [type, bytes, blockBytes] of [
      ['q8_0', quantizeQ8_0(values), 34],
      ['q4_0', quantizeQ4_0(values), 18],
    ] as const) {
      expect(bytes.length).toBe((values.length / 32) * blockBytes);
      const view = new DataView(bytes.buffer);
      for (let block = 0; block < values.length / 32; block++) {
        const base = block * blockBytes;
        const scale = float16BitsToNumber(view.getUint16(base, true));
        for (let i = 0; i < 32; i++) {
          const level =
            type === 'q8_0'
              ? view.getInt8(base + 2 + i)
              : ((view.getUint8(base + 2 + (i % 16)) >> (i < 16 ? 0 : 4)) & 15) - 8;
          const value = values[block * 32 + i] ?? Number.NaN;
          // Half a step, plus the fp16 rounding of the scale times the largest level; q4_0's
          // levels run from -8 (the block's extreme) to +7 only, so the opposite extreme is
          // clipped by up to one step.
          const steps = type === 'q4_0' && level === 7 ? 1 : 0.5;
          expect(Math.abs(scale * level - value)).toBeLessThanOrEqual(
            Math.abs(scale) * (steps + 2 ** -11 * 128) + 1e-7,
          );
        }
      }
    }
  });

  it.each(GGUF_FILE_TYPES)(
    "%s: llama.cpp's log-probs equal the float64 oracle's (small shape)",
    async (type) => {
      const path = join(dir, `small-${type}.gguf`);
      await writeGptNeoxGguf(path, config, weights, { name: 'small', type });
      const model = await llama.loadModel({ modelPath: path });
      try {
        const check = await checkAgainstOracle(model, type, config, weights, ids, THREADS);
        expect(check.maxLogProbDifference, JSON.stringify(check)).toBeLessThanOrEqual(
          check.tolerance,
        );
        // The scale the difference is read against: logits that are not nearly uniform.
        expect(check.oracleLogProbRange).toBeGreaterThan(5);
      } finally {
        await model.dispose();
      }
    },
  );

  it("is caught when QKV keeps Hugging Face's per-head order", async () => {
    // The check can fail: the same file with layer 0's fused QKV rows not regrouped.
    const path = join(dir, 'small-wrong-qkv.gguf');
    const hfOrder = weights.get('gpt_neox.layers.0.attention.query_key_value.weight')?.data;
    if (hfOrder === undefined) throw new Error('no QKV weight');
    const tensors = gptNeoxGgufTensors(config, weights, 'f32').map((tensor) =>
      tensor.name === 'blk.0.attn_qkv.weight' ? { ...tensor, data: hfOrder } : tensor,
    );
    await writeGguf(path, gptNeoxGgufMetadata(config, { name: 'wrong', type: 'f32' }), tensors);
    const model = await llama.loadModel({ modelPath: path });
    try {
      const check = await checkAgainstOracle(model, 'f32', config, weights, ids, THREADS);
      expect(check.maxLogProbDifference).toBeGreaterThan(1);
    } finally {
      await model.dispose();
    }
  });

  it('model export-gguf redraws a seeded bundle and refuses one it cannot read back', async () => {
    const bundle = join(dir, 'tiny-bundle');
    await createPresetBundle(bundle, 'tiny', { attention: 'softmax', seed: 4 });
    const out = join(dir, 'tiny.gguf');
    const result = spawnSync(
      process.execPath,
      [cli, 'model', 'export-gguf', '--model', bundle, '--out', out, '--type', 'f16'],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toContain('f16 weights');
    const tiny = presetConfig('tiny', 'softmax');
    const expected = join(dir, 'tiny-expected.gguf');
    await writeGptNeoxGguf(expected, tiny, initWeights(tiny, 4), {
      name: 'tiny-softmax',
      type: 'f16',
    });
    expect((await readFile(out)).equals(await readFile(expected))).toBe(true);

    const unseeded = join(dir, 'unseeded');
    await writeBundle(unseeded, tiny, initWeights(tiny, 4), { id: 'unseeded' });
    const refused = spawnSync(
      process.execPath,
      [cli, 'model', 'export-gguf', '--model', unseeded, '--out', join(dir, 'x.gguf')],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toContain('records no initialisation seed');
  });

  it('model export-gguf --from writes a plain checkpoint and refuses a DiJiang one', async () => {
    const tiny = presetConfig('tiny', 'softmax');
    const plain = join(dir, 'plain-checkpoint');
    await mkdir(plain, { recursive: true });
    await writeFile(
      join(plain, 'config.json'),
      JSON.stringify({
        architectures: ['GPTNeoXForCausalLM'],
        model_type: 'gpt_neox',
        hidden_size: tiny.hiddenSize,
        num_attention_heads: tiny.numHeads,
        num_hidden_layers: tiny.numLayers,
        intermediate_size: tiny.intermediateSize,
        vocab_size: tiny.vocabSize,
        max_position_embeddings: tiny.maxPositionEmbeddings,
        rotary_pct: tiny.rotaryPct,
        layer_norm_eps: tiny.layerNormEps,
      }),
    );
    const checkpointWeights = testWeights(tiny, 8);
    await writeSafetensors(join(plain, 'model.safetensors'), checkpointWeights, { dtype: 'F32' });
    const out = join(dir, 'plain.gguf');
    const result = spawnSync(
      process.execPath,
      [cli, 'model', 'export-gguf', '--from', plain, '--out', out, '--type', 'q8_0'],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(result.status, result.stderr).toBe(0);
    const expected = join(dir, 'plain-expected.gguf');
    await writeGptNeoxGguf(expected, tiny, checkpointWeights, {
      name: 'plain-checkpoint',
      type: 'q8_0',
    });
    expect((await readFile(out)).equals(await readFile(expected))).toBe(true);

    const dijiangCheckpoint = join(dir, 'dijiang-checkpoint');
    await mkdir(dijiangCheckpoint, { recursive: true });
    await writeFile(
      join(dijiangCheckpoint, 'config.json'),
      await readFile(join(plain, 'config.json')),
    );
    const tinyDijiang = presetConfig('tiny', 'dijiang');
    await writeSafetensors(
      join(dijiangCheckpoint, 'model.safetensors'),
      initWeights(tinyDijiang, 8),
      { dtype: 'F32' },
    );
    const refused = spawnSync(
      process.execPath,
      [cli, 'model', 'export-gguf', '--from', dijiangCheckpoint, '--out', join(dir, 'd.gguf')],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toContain('the checkpoint has DiJiang tensors');
  });
});
