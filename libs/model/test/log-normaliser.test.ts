import { describe, expect, it } from 'vitest';
import { oracleLogits, presetConfig } from '#model';
import { runChunk } from '#engine/runtime';
import { openTestModel, randomIds, testWeights } from './support.js';

describe('logits log-normaliser output', () => {
  it.each(['dijiang', 'softmax'] as const)(
    '%s: equals log sum exp of the oracle logits for every row of a padded batch',
    async (attention) => {
      const config = presetConfig('tiny', attention);
      const weights = testWeights(config, 5);
      const { session } = await openTestModel(config, weights);
      const rows = [randomIds(9, config.vocabSize, 1), randomIds(4, config.vocabSize, 2)];
      const result = await runChunk(session, config, {
        inputIds: rows.flatMap((ids) => [...ids, ...new Array<number>(9 - ids.length).fill(0)]),
        batch: 2,
        chunk: 9,
        startPos: [0, 0],
        validLen: rows.map((ids) => ids.length),
      });
      rows.forEach((ids, row) => {
        const logits = oracleLogits(config, weights, ids, { logitPositions: [ids.length - 1] });
        const max = Math.max(...logits);
        const expected =
          max + Math.log(logits.reduce((sum, value) => sum + Math.exp(value - max), 0));
        const actual = result.logitsLogNormaliser[row] ?? Number.NaN;
        expect(Math.abs(actual - expected)).toBeLessThan(1e-5 + 1e-4 * Math.abs(expected));
      });
    },
  );
});
