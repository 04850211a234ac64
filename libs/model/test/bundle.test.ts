import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  initWeights,
  kvBytesPerToken,
  loadBundle,
  oracleLogits,
  parameterCount,
  presetConfig,
  sha256File,
  stateBytesPerSequence,
  writeBundle,
} from '#model';
import { openBundleSession, runChunk } from '#engine/runtime';
import { expectClose } from './support.js';

async function tinyBundle(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dijiang-bundle-'));
  const config = presetConfig('tiny', 'dijiang');
  await writeBundle(dir, config, initWeights(config, 3), { id: 'tiny-test', seed: 3 });
  return dir;
}

describe('model bundles', () => {
  it('round trip: the manifest describes the files and the loaded graph computes the model', async () => {
    const config = presetConfig('tiny', 'dijiang');
    const weights = initWeights(config, 3);
    const dir = await tinyBundle();
    const bundle = await loadBundle(dir);
    const manifest = bundle.manifest;
    expect(manifest.config).toEqual(config);
    expect(manifest.tokenizer).toBe('byte');
    expect(manifest.seed).toBe(3);
    expect(manifest.chat).toBeUndefined();
    expect(manifest.parameterCount).toBe(parameterCount(config));
    // 2 layers x 4 heads x 32 x 32 float32 values.
    expect(manifest.stateBytesPerSequence).toBe(2 * 4 * 32 * 32 * 4);
    expect(manifest.stateBytesPerSequence).toBe(stateBytesPerSequence(config));
    expect(manifest.kvBytesPerToken).toBe(0);
    // The released initialisation D1 = g^t, D2 = g^-t is constant decay per head, with
    // g_h = 1 - exp(linspace(ln 1/32, ln 1/512, H)): for H = 4, 1 - 1/32, 1 - 1/80.6, 1 - 1/203, 1 - 1/512.
    const released = [0, 1, 2, 3].map(
      (h) => 1 - Math.exp(Math.log(1 / 32) - (h * Math.log(16)) / 3),
    );
    if (manifest.decay?.form !== 'constant') throw new Error('expected constant decay');
    for (const row of manifest.decay.headDecays)
      expectClose(row, released, 'head decays', { rtol: 1e-6, atol: 0 });
    expect(manifest.card).toBeUndefined();
    expect(Object.keys(manifest.files)).toEqual(['model.onnx']);
    expect(manifest.files['model.onnx']?.sha256).toBe(await sha256File(join(dir, 'model.onnx')));

    const session = await openBundleSession(bundle);
    const ids = [72, 101, 108, 108, 111];
    const result = await runChunk(session, config, {
      inputIds: ids,
      batch: 1,
      chunk: 5,
      startPos: [0],
      validLen: [5],
    });
    expectClose(
      result.logits,
      oracleLogits(config, weights, ids, { logitPositions: [4] }),
      'bundle logits',
    );
    await session.release();
  });

  it('records KV bytes per token for the softmax baseline', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dijiang-bundle-'));
    const config = presetConfig('tiny', 'softmax');
    const manifest = await writeBundle(dir, config, initWeights(config, 1), { id: 'tiny-softmax' });
    // K and V, 2 layers x 128 channels, float32.
    expect(manifest.kvBytesPerToken).toBe(2 * 2 * 128 * 4);
    expect(manifest.kvBytesPerToken).toBe(kvBytesPerToken(config));
    expect(manifest.stateBytesPerSequence).toBe(0);
  });

  it('fails naming a missing graph file', async () => {
    const dir = await tinyBundle();
    await rm(join(dir, 'model.onnx'));
    await expect(loadBundle(dir)).rejects.toThrow(`model bundle ${dir}: missing file model.onnx`);
  });

  it('fails naming a corrupt graph file', async () => {
    const dir = await tinyBundle();
    const path = join(dir, 'model.onnx');
    const bytes = await readFile(path);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] ?? 0) ^ 0xff;
    await writeFile(path, bytes);
    await expect(loadBundle(dir)).rejects.toThrow(
      /model\.onnx is corrupt: sha256 [0-9a-f]{64} does not match model\.json/,
    );
  });

  it('fails naming a truncated graph file', async () => {
    const dir = await tinyBundle();
    const path = join(dir, 'model.onnx');
    await writeFile(path, (await readFile(path)).subarray(0, 100));
    await expect(loadBundle(dir)).rejects.toThrow(
      /model\.onnx is corrupt: 100 bytes, model\.json says \d+/,
    );
  });

  it('fails on a missing or invalid model.json', async () => {
    const dir = await tinyBundle();
    const manifestPath = join(dir, 'model.json');
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as {
      config: { hiddenSize: number };
    };
    manifest.config.hiddenSize = 130;
    await writeFile(manifestPath, JSON.stringify(manifest));
    await expect(loadBundle(dir)).rejects.toThrow(
      /invalid model\.json: .*hiddenSize 130 is not divisible by numHeads 4/s,
    );
    await rm(manifestPath);
    await expect(loadBundle(dir)).rejects.toThrow(`model bundle ${dir}: missing model.json`);
  });

  it('copies tokenizer.json for Hugging Face tokenizers and checks it on load', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dijiang-bundle-'));
    const config = { ...presetConfig('tiny', 'dijiang'), tokenizer: 'hf' as const };
    const tokenizerSource = join(dir, 'source-tokenizer.json');
    await writeFile(tokenizerSource, '{"model": {"type": "BPE"}}');
    const out = join(dir, 'bundle');
    await expect(writeBundle(out, config, initWeights(config, 1), { id: 'hf' })).rejects.toThrow(
      /give the tokenizer\.json/,
    );
    await writeBundle(out, config, initWeights(config, 1), {
      id: 'hf',
      tokenizerJsonPath: tokenizerSource,
    });
    const bundle = await loadBundle(out);
    expect(bundle.tokenizerJsonPath).toBe(join(out, 'tokenizer.json'));
    await rm(join(out, 'tokenizer.json'));
    await expect(loadBundle(out)).rejects.toThrow(`missing file tokenizer.json`);
  });

  it('records a chat template in the manifest and refuses one that does not parse', async () => {
    const config = presetConfig('tiny', 'dijiang');
    const chat = {
      template:
        "{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + eos_token }}{% endfor %}",
      bosToken: '<s>',
      eosToken: '</s>',
    };
    const dir = await mkdtemp(join(tmpdir(), 'dijiang-bundle-'));
    await writeBundle(dir, config, initWeights(config, 1), { id: 'chat', chat });
    expect((await loadBundle(dir)).manifest.chat).toEqual(chat);

    const unparsable = { template: '{% for message in %}{% endfor %}' };
    await expect(
      writeBundle(join(dir, 'broken'), config, initWeights(config, 1), {
        id: 'broken',
        chat: unparsable,
      }),
    ).rejects.toThrow(
      /^model broken: invalid chat template: .*the chat template does not parse as Jinja: Unexpected token/s,
    );
    // Refused before anything was written.
    expect(existsSync(join(dir, 'broken'))).toBe(false);

    // A hand-edited manifest is checked on load too.
    const manifestPath = join(dir, 'model.json');
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as { chat: unknown };
    manifest.chat = unparsable;
    await writeFile(manifestPath, JSON.stringify(manifest));
    await expect(loadBundle(dir)).rejects.toThrow(
      /invalid model\.json: .*the chat template does not parse as Jinja.*→ at chat\.template/s,
    );
  });
});
