import { mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildModelGraph, decodeModel, oracleLogits, presetConfig, writeOnnxModel } from '#model';
import { openSession, runChunk } from '#engine/runtime';
import { expectClose, randomIds, testWeights } from './support.js';

describe('decay table validation', () => {
  it.each([0, -0.25])('refuses a D1 entry of %d, naming layer, head and position', (value) => {
    const config = presetConfig('tiny', 'dijiang');
    const weights = testWeights(config, 1);
    const d1 = weights.get('gpt_neox.layers.1.attention.D1');
    if (d1 === undefined) throw new Error('tiny has no layer 1 D1');
    d1.data[2 * config.maxPositionEmbeddings + 100] = value;
    expect(() => buildModelGraph(config, weights)).toThrow(/layer 1, head 2, position 100/);
  });
});

describe('graph files', () => {
  it('external data gives the same logits as inline weights', async () => {
    const config = presetConfig('tiny', 'dijiang');
    const weights = testWeights(config, 2);
    const dir = await mkdtemp(join(tmpdir(), 'dijiang-graph-'));
    const inline = await writeOnnxModel(config, weights, join(dir, 'inline.onnx'), {
      externalData: 'never',
    });
    const external = await writeOnnxModel(config, weights, join(dir, 'external.onnx'), {
      externalData: 'always',
    });
    expect(inline.dataPath).toBeUndefined();
    expect(external.dataPath).toBe(join(dir, 'external.onnx.data'));
    expect((await stat(join(dir, 'external.onnx'))).size).toBeLessThan(100_000);
    const ids = randomIds(20, config.vocabSize, 4);
    const request = { inputIds: ids, batch: 1, chunk: 20, startPos: [0], validLen: [20] };
    const a = await runChunk(await openSession(inline.modelPath), config, request);
    const b = await runChunk(await openSession(external.modelPath), config, request);
    expect(b.logits).toEqual(a.logits);
  });

  it.each(['dijiang', 'softmax'] as const)(
    'the fp16 %s graph stores fp16 weights and runs on CPU',
    async (attention) => {
      const config = presetConfig('tiny', attention);
      const weights = testWeights(config, 6);
      const dir = await mkdtemp(join(tmpdir(), 'dijiang-fp16-'));
      const { modelPath } = await writeOnnxModel(config, weights, join(dir, 'model.onnx'), {
        precision: 'fp16',
      });
      const model = decodeModel(await readFile(modelPath));
      const embed = model.graph.initializer.find(
        (tensor) => tensor.name === 'gpt_neox.embed_in.weight',
      );
      expect(embed?.dataType).toBe(10);
      const ids = randomIds(32, config.vocabSize, 4);
      const result = await runChunk(await openSession(modelPath), config, {
        inputIds: ids,
        batch: 1,
        chunk: 32,
        startPos: [0],
        validLen: [32],
      });
      const expected = oracleLogits(config, weights, ids, { logitPositions: [31] });
      const scale = Math.max(...Array.from(expected, Math.abs));
      // fp16 keeps ~3 significant digits; errors add up over the layers.
      expectClose(result.logits, expected, 'fp16 logits', { rtol: 0, atol: 2e-2 * scale });
    },
  );
});
