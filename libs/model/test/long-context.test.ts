import { describe, expect, it } from 'vitest';
import { logSoftmaxRows, modelConfigSchema, oracleLogits } from '#model';
import { expectClose, openTestModel, randomIds, runSchedule, testWeights } from './support.js';

// A narrow model with the full 2048-entry decay tables keeps the float64 oracle at 20,000 tokens
// to about a second; the graph is the same as for any preset.
const config = modelConfigSchema.parse({
  architecture: 'gpt-neox',
  attention: 'dijiang',
  vocabSize: 257,
  hiddenSize: 32,
  numLayers: 2,
  numHeads: 2,
  intermediateSize: 64,
  rotaryPct: 0.25,
  rotaryBase: 10000,
  maxPositionEmbeddings: 2048,
  layerNormEps: 1e-5,
  tokenizer: 'byte',
});
const LENGTH = 20_000;
const CHECKED = [0, 1500, 2046, 2047, 2048, 2049, 4000, 12_345, LENGTH - 2];

describe('past the decay tables', () => {
  it('a 20,000-token stream stays finite and matches the oracle extension', async () => {
    const weights = testWeights(config, 41);
    const { session } = await openTestModel(config, weights);
    const ids = randomIds(LENGTH, config.vocabSize, 9);
    const run = await runSchedule(session, config, ids, [1000, 777]);
    expect(run.targetLogprobs.every(Number.isFinite)).toBe(true);
    expect((run.final.state ?? new Float32Array([Number.NaN])).every(Number.isFinite)).toBe(true);

    const vocab = config.vocabSize;
    const expected = logSoftmaxRows(
      oracleLogits(config, weights, ids, { logitPositions: CHECKED }),
      vocab,
    );
    expectClose(
      CHECKED.map((position) => run.targetLogprobs[position] ?? Number.NaN),
      CHECKED.map(
        (position, row) => expected[row * vocab + (ids[position + 1] ?? 0)] ?? Number.NaN,
      ),
      'target log-probs at checked positions',
    );
    await session.release();
  });
});
