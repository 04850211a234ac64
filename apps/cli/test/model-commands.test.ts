import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadBundle, parameterCount, presetConfig } from '#model';
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

  it('rejects an unknown preset', async () => {
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await expect(run(['model', 'create', '--preset', 'huge', '--out', '/tmp/x'])).rejects.toThrow(
      /unknown preset/,
    );
  });
});
