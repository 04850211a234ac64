import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { initWeights, loadBundle, parameterCount, presetConfig, writeSafetensors } from '#model';
import { registerModelCommands } from '../src/model-commands.js';

async function run(args: string[]): Promise<string> {
  const program = new Command('dijiang').exitOverride();
  registerModelCommands(program);
  let output = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    output += String(chunk);
    return true;
  });
  await program.parseAsync(args, { from: 'user' });
  vi.restoreAllMocks();
  return output;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('dijiang model create / inspect', () => {
  it('creates a softmax tiny bundle and inspects it', async () => {
    const out = join(await mkdtemp(join(tmpdir(), 'dijiang-cli-')), 'tiny');
    const created = await run([
      'model',
      'create',
      '--preset',
      'tiny',
      '--out',
      out,
      '--seed',
      '5',
      '--attention',
      'softmax',
    ]);
    const config = presetConfig('tiny', 'softmax');
    expect(created).toContain(
      `model id tiny-softmax, ${parameterCount(config)} parameters, seed 5`,
    );
    const bundle = await loadBundle(out);
    expect(bundle.manifest.config).toEqual(config);
    expect(bundle.manifest.seed).toBe(5);

    const inspected = await run(['model', 'inspect', out]);
    expect(inspected).toContain('attention softmax');
    expect(inspected).toContain(`parameters ${parameterCount(config)} (seed 5)`);
    // K and V for 2 layers x 128 channels, float32.
    expect(inspected).toContain('KV cache per token 2.0 KiB (2048 bytes)');
    expect(inspected).toMatch(/model\.onnx \d+(\.\d)? (KiB|MiB)/);
  });

  it('reports the DiJiang state per sequence', async () => {
    const out = join(await mkdtemp(join(tmpdir(), 'dijiang-cli-')), 'tiny');
    await run(['model', 'create', '--preset', 'tiny', '--out', out]);
    const inspected = await run(['model', 'inspect', out]);
    // 2 layers x 4 heads x 32 x 32 float32 values.
    expect(inspected).toContain('state per sequence 32.0 KiB (32768 bytes, any context length)');
  });

  it('stores the CPU graph at the --weights precision; inspect names it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dijiang-cli-'));
    const created = await run(['model', 'create', '--preset', 'tiny', '--out', join(dir, 'q')]);
    expect(created).toContain('fp32 weights');
    expect(await run(['model', 'inspect', join(dir, 'q')])).toContain('weights: fp32 (CPU graph)');
    await run([
      'model',
      'create',
      '--preset',
      'tiny',
      '--out',
      join(dir, 'q4'),
      '--weights',
      'int4',
    ]);
    expect((await loadBundle(join(dir, 'q4'))).manifest.weights).toBe('int4');
    expect(await run(['model', 'inspect', join(dir, 'q4')])).toContain(
      'weights: int4 (CPU graph; blocks of 32 with one fp32 scale each; embedding, layers and LM head)',
    );
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await expect(
      run(['model', 'create', '--preset', 'tiny', '--out', join(dir, 'x'), '--weights', 'int3']),
    ).rejects.toThrow(/Allowed choices are fp32, fp16, int8, int4/);
  });

  it('checks the tokenizer and the folder before drawing any weight', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dijiang-cli-'));
    const out = join(dir, 'big');
    // pythia-2.8b's weights would take 11 GiB and minutes: the error comes before them.
    await expect(run(['model', 'create', '--preset', 'pythia-2.8b', '--out', out])).rejects.toThrow(
      'preset pythia-2.8b uses a Hugging Face tokenizer: give its tokenizer.json with --tokenizer FILE',
    );
    const tokenizer = join(dir, 'tokenizer.json');
    await expect(
      run(['model', 'create', '--preset', 'pythia-2.8b', '--out', out, '--tokenizer', tokenizer]),
    ).rejects.toThrow(`tokenizer file ${tokenizer} is missing or not a file`);
    await writeFile(tokenizer, '{"model": {"type": "BPE"}}');
    await expect(
      run(['model', 'create', '--preset', 'tiny', '--out', out, '--tokenizer', tokenizer]),
    ).rejects.toThrow('preset tiny uses the byte tokenizer: --tokenizer does not apply to it');
    await expect(
      run([
        'model',
        'create',
        '--preset',
        'pythia-2.8b',
        '--out',
        tokenizer,
        '--tokenizer',
        tokenizer,
      ]),
    ).rejects.toThrow(`bundle folder ${tokenizer} exists and is not a folder`);
    expect(existsSync(out)).toBe(false);
    // convert checks its folder before it reads the checkpoint: here there is none to read.
    await expect(
      run(['model', 'convert', '--from', join(dir, 'absent'), '--out', tokenizer]),
    ).rejects.toThrow(`bundle folder ${tokenizer} exists and is not a folder`);
  });

  it('rejects an unknown preset', async () => {
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await expect(run(['model', 'create', '--preset', 'huge', '--out', '/tmp/x'])).rejects.toThrow(
      /unknown preset/,
    );
  });
});

describe('chat templates (--chat-template)', () => {
  const CHATML =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  const ZEPHYR =
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

  async function templateFile(dir: string, name: string, text: string): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, text);
    return path;
  }

  it('model create bundles the given template and says so; inspect shows it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dijiang-cli-'));
    const file = await templateFile(dir, 'chatml.jinja', CHATML);
    const out = join(dir, 'chat');
    const created = await run([
      'model',
      'create',
      '--preset',
      'tiny',
      '--out',
      out,
      '--chat-template',
      file,
    ]);
    expect(created).toContain(`  chat template bundled from ${file}\n`);
    expect((await loadBundle(out)).manifest.chat).toEqual({ template: CHATML });
    expect(await run(['model', 'inspect', out])).toContain(
      `  chat template: ${CHATML.length} characters\n`,
    );

    const plain = join(dir, 'plain');
    expect(await run(['model', 'create', '--preset', 'tiny', '--out', plain])).toContain(
      "  no chat template: chat requests get the gateway's default format\n",
    );
    expect((await loadBundle(plain)).manifest.chat).toBeUndefined();
    expect(await run(['model', 'inspect', plain])).toContain(
      "  chat template: none (chat requests get the gateway's default format)\n",
    );
  });

  it('refuses a template file that is missing, empty or not Jinja', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dijiang-cli-'));
    const create = (file: string) =>
      run([
        'model',
        'create',
        '--preset',
        'tiny',
        '--out',
        join(dir, 'x'),
        '--chat-template',
        file,
      ]);
    await expect(create(join(dir, 'absent.jinja'))).rejects.toThrow(
      `chat template file ${join(dir, 'absent.jinja')} is missing or unreadable`,
    );
    const empty = await templateFile(dir, 'empty.jinja', '\n');
    await expect(create(empty)).rejects.toThrow(`chat template file ${empty} is empty`);
    const broken = await templateFile(dir, 'broken.jinja', '{% for message in %}{% endfor %}');
    await expect(create(broken)).rejects.toThrow(
      `chat template file ${broken} does not parse as Jinja: Unexpected token`,
    );
  });

  it("model convert bundles the checkpoint's template, or the given one instead", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dijiang-cli-'));
    const checkpoint = join(dir, 'checkpoint');
    await mkdir(checkpoint);
    const config = presetConfig('tiny', 'dijiang');
    await writeFile(
      join(checkpoint, 'config.json'),
      JSON.stringify({
        hidden_size: config.hiddenSize,
        num_attention_heads: config.numHeads,
        num_hidden_layers: config.numLayers,
        intermediate_size: config.intermediateSize,
        vocab_size: config.vocabSize,
        max_position_embeddings: config.maxPositionEmbeddings,
        rotary_pct: config.rotaryPct,
        rotary_emb_base: config.rotaryBase,
        layer_norm_eps: config.layerNormEps,
      }),
    );
    await writeSafetensors(join(checkpoint, 'model.safetensors'), initWeights(config, 2));
    await writeFile(
      join(checkpoint, 'tokenizer_config.json'),
      JSON.stringify({ chat_template: CHATML, bos_token: '<s>', eos_token: '</s>' }),
    );

    const own = join(dir, 'own');
    expect(await run(['model', 'convert', '--from', checkpoint, '--out', own])).toContain(
      `  chat template bundled from ${join(checkpoint, 'tokenizer_config.json')}\n`,
    );
    expect((await loadBundle(own)).manifest.chat).toEqual({
      template: CHATML,
      bosToken: '<s>',
      eosToken: '</s>',
    });

    const file = await templateFile(dir, 'zephyr.jinja', ZEPHYR);
    const given = join(dir, 'given');
    expect(
      await run([
        'model',
        'convert',
        '--from',
        checkpoint,
        '--out',
        given,
        '--chat-template',
        file,
        '--weights',
        'int8',
      ]),
    ).toContain(`  chat template bundled from ${file}\n`);
    const givenManifest = (await loadBundle(given)).manifest;
    expect(givenManifest.chat).toEqual({
      template: ZEPHYR,
      bosToken: '<s>',
      eosToken: '</s>',
    });
    expect(givenManifest.weights).toBe('int8');
  });
});
