import { describe, expect, it } from 'vitest';
import {
  logSoftmaxRows,
  oracleLogits,
  presetConfig,
  type AttentionKind,
  type PresetName,
} from '#model';
import { runChunk } from '#engine/runtime';
import { expectClose, openTestModel, randomIds, testWeights } from './support.js';

const cases: [PresetName, AttentionKind, number][] = [
  ['tiny', 'dijiang', 96],
  ['tiny', 'softmax', 96],
  ['small', 'dijiang', 64],
  ['small', 'softmax', 64],
];

describe('ONNX graph vs the float64 oracle', () => {
  it.each(cases)(
    '%s %s: last logits and every target log-prob of a %i-token chunk',
    async (preset, attention, length) => {
      const config = presetConfig(preset, attention);
      const weights = testWeights(config, 11);
      const { session } = await openTestModel(config, weights);
      const ids = randomIds(length, config.vocabSize, 5);
      const targets = [...ids.slice(1), 0];
      const result = await runChunk(session, config, {
        inputIds: ids,
        batch: 1,
        chunk: length,
        startPos: [0],
        validLen: [length],
        targetIds: targets,
      });
      const expected = oracleLogits(config, weights, ids);
      const vocab = config.vocabSize;
      expectClose(result.logits, expected.subarray((length - 1) * vocab), 'last logits');
      const expectedLogprobs = logSoftmaxRows(expected, vocab);
      const scored = (result.targetLogprobs ?? new Float32Array()).subarray(0, length - 1);
      expectClose(
        scored,
        targets
          .slice(0, length - 1)
          .map((target, t) => expectedLogprobs[t * vocab + target] ?? Number.NaN),
        'target log-probs',
      );
      await session.release();
    },
  );

  it('skips scoring when target_ids has zero columns', async () => {
    const config = presetConfig('tiny', 'dijiang');
    const { session } = await openTestModel(config, testWeights(config, 3));
    const result = await runChunk(session, config, {
      inputIds: [1, 2, 3],
      batch: 1,
      chunk: 3,
      startPos: [0],
      validLen: [3],
    });
    expect(result.targetLogprobs).toBeUndefined();
    expect(result.logits).toHaveLength(config.vocabSize);
    await session.release();
  });
});
