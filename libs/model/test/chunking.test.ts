import { describe, expect, it } from 'vitest';
import { logSoftmaxRows, oracleLogits, presetConfig, type AttentionKind } from '#model';
import { expectClose, openTestModel, randomIds, runSchedule, testWeights } from './support.js';

const LENGTH = 240;
const schedules: [string, number[]][] = [
  ['whole', [LENGTH]],
  ['token by token', [1]],
  ['mixed', [1, 7, 64, 3, 100, 2]],
];

describe.each<AttentionKind>(['dijiang', 'softmax'])('%s chunk schedules', (attention) => {
  const config = presetConfig('tiny', attention);
  const weights = testWeights(config, 21);
  const ids = randomIds(LENGTH, config.vocabSize, 8);
  const vocab = config.vocabSize;

  it('every schedule matches the oracle and the others', async () => {
    const expectedRaw = oracleLogits(config, weights, ids);
    const expected = logSoftmaxRows(Float64Array.from(expectedRaw), vocab);
    const expectedTargets = ids
      .slice(1)
      .map((target, t) => expected[t * vocab + target] ?? Number.NaN);
    const { session } = await openTestModel(config, weights);
    const finals: Float32Array[] = [];
    for (const [name, sizes] of schedules) {
      const run = await runSchedule(session, config, ids, sizes);
      expectClose(run.targetLogprobs, expectedTargets, `${name}: target log-probs`);
      for (const [position, logits] of run.logitsAt) {
        expectClose(
          logits,
          expectedRaw.subarray(position * vocab, (position + 1) * vocab),
          `${name}: logits at ${position}`,
        );
      }
      const final = run.final.state ?? run.final.kv?.key;
      expect(final).toBeDefined();
      if (final !== undefined) finals.push(final);
    }
    const [whole, ...others] = finals;
    for (const other of others)
      expectClose(other, whole ?? new Float32Array(), 'final state vs whole-sequence run', {
        rtol: 1e-4,
        atol: 1e-6,
      });
    await session.release();
  });
});
