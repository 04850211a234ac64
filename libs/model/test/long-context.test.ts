import { describe, expect, it } from 'vitest';
import {
  decayForm,
  logSoftmaxRows,
  modelConfigSchema,
  oracleLogits,
  type ModelConfig,
  type Weights,
} from '#model';
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

/** The graph's log-prob of each next token at `checked` positions equals the float64 oracle's. */
function expectOracleTargets(
  model: ModelConfig,
  weights: Weights,
  ids: readonly number[],
  targetLogprobs: Float32Array,
  checked: readonly number[],
): void {
  const vocab = model.vocabSize;
  const expected = logSoftmaxRows(
    oracleLogits(model, weights, ids, { logitPositions: checked }),
    vocab,
  );
  expectClose(
    checked.map((position) => targetLogprobs[position] ?? Number.NaN),
    checked.map((position, row) => expected[row * vocab + (ids[position + 1] ?? 0)] ?? Number.NaN),
    'target log-probs at checked positions',
  );
}
const CHECKED = [0, 1500, 2046, 2047, 2048, 2049, 4000, 12_345, LENGTH - 2];

describe('past the decay tables', () => {
  it('a 20,000-token stream stays finite and matches the oracle extension', async () => {
    const weights = testWeights(config, 41);
    const { session } = await openTestModel(config, weights);
    const ids = randomIds(LENGTH, config.vocabSize, 9);
    const run = await runSchedule(session, config, ids, [1000, 777]);
    expect(run.targetLogprobs.every(Number.isFinite)).toBe(true);
    expect((run.final.state ?? new Float32Array([Number.NaN])).every(Number.isFinite)).toBe(true);

    expectOracleTargets(config, weights, ids, run.targetLogprobs, CHECKED);
    await session.release();
  });
});

// Short memories as trained models learn them: g = 0.3 cannot live in 2048-entry float32 tables
// (0.3^2047 underflows, 0.3^-2047 overflows), so the decay is stated by 64-entry tables and the
// graph continues past them with the last ratio and product, which for constant decay is exact.
const shortMemory = modelConfigSchema.parse({ ...config, maxPositionEmbeddings: 64 });
const SHORT_MEMORY_DECAYS = [0.3, 0.62];
const SHORT_LENGTH = 100_000;
const SHORT_CHECKED = [0, 63, 64, 65, 5000, 54_321, SHORT_LENGTH - 2];

function constantDecayWeights(decays: readonly number[]): Weights {
  const weights = testWeights(shortMemory, 43);
  const maxPos = shortMemory.maxPositionEmbeddings;
  for (let layer = 0; layer < shortMemory.numLayers; layer++) {
    const d1 = weights.get(`gpt_neox.layers.${layer}.attention.D1`)?.data;
    const d2 = weights.get(`gpt_neox.layers.${layer}.attention.D2`)?.data;
    if (d1 === undefined || d2 === undefined) throw new Error(`layer ${layer} has no decay tables`);
    decays.forEach((g, h) => {
      for (let t = 0; t < maxPos; t++) {
        d1[h * maxPos + t] = g ** t;
        d2[h * maxPos + t] = g ** -t;
      }
    });
  }
  return weights;
}

describe('per-head constant decay in short tables', () => {
  it('g = 0.3 over 100,000 tokens matches the float64 oracle', async () => {
    const weights = constantDecayWeights(SHORT_MEMORY_DECAYS);
    const form = decayForm(shortMemory, weights);
    expect(form.form).toBe('constant');
    if (form.form === 'constant') {
      for (const row of form.headDecays) expectClose(row, SHORT_MEMORY_DECAYS, 'head decays');
    }
    const { session } = await openTestModel(shortMemory, weights);
    const ids = randomIds(SHORT_LENGTH, shortMemory.vocabSize, 11);
    const run = await runSchedule(session, shortMemory, ids, [4096, 1, 2999]);
    expect(run.targetLogprobs.every(Number.isFinite)).toBe(true);
    expectOracleTargets(shortMemory, weights, ids, run.targetLogprobs, SHORT_CHECKED);
    await session.release();
  });

  it('tables whose ratios vary with position are not called constant', () => {
    expect(decayForm(config, testWeights(config, 41)).form).toBe('tables');
  });
});
