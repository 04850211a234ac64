import { describe, expect, it } from 'vitest';
import { headDim, oracleLogits, presetConfig, type AttentionKind } from '#model';
import { runChunk, type KvCache } from '#engine/runtime';
import {
  expectClose,
  openTestModel,
  randomIds,
  runSchedule,
  stateRow,
  testWeights,
  type SingleRowState,
} from './support.js';

const CHUNK = 8;
const PAD_ID = 7;
/** Rows: tokens already in the state, then real tokens in this chunk (0 = an idle row). */
const rows = [
  { prefix: 0, valid: 5 },
  { prefix: 37, valid: 8 },
  { prefix: 120, valid: 1 },
  { prefix: 50, valid: 0 },
];

describe.each<AttentionKind>(['dijiang', 'softmax'])('%s batch isolation', (attention) => {
  it('rows with different positions and lengths match each row run alone', async () => {
    const config = presetConfig('tiny', attention);
    const weights = testWeights(config, 31);
    const { session } = await openTestModel(config, weights);
    const vocab = config.vocabSize;
    const blockSize = config.numHeads * headDim(config) ** 2;
    const d = headDim(config);
    const sequences = rows.map((row, r) => randomIds(row.prefix + row.valid, vocab, 100 + r));

    const prefixStates: SingleRowState[] = [];
    for (const [r, row] of rows.entries()) {
      const sequence = sequences[r] ?? [];
      prefixStates.push(
        row.prefix === 0
          ? {}
          : (await runSchedule(session, config, sequence.slice(0, row.prefix), [64])).final,
      );
    }

    // The batch: right-padded ids; states stacked per layer; KV caches padded to the longest
    // prefix with junk that must never be read.
    const batch = rows.length;
    const inputIds = rows.flatMap((row, r) =>
      Array.from({ length: CHUNK }, (_, t) =>
        t < row.valid ? (sequences[r]?.[row.prefix + t] ?? 0) : PAD_ID,
      ),
    );
    const feeds: { state?: Float32Array; kv?: KvCache } = {};
    const past = Math.max(...rows.map((row) => row.prefix));
    if (attention === 'dijiang') {
      const state = new Float32Array(config.numLayers * batch * blockSize);
      for (const [r, row] of rows.entries()) {
        const own = prefixStates[r]?.state;
        if (row.prefix === 0 || own === undefined) continue;
        for (let layer = 0; layer < config.numLayers; layer++) {
          state.set(
            own.subarray(layer * blockSize, (layer + 1) * blockSize),
            (layer * batch + r) * blockSize,
          );
        }
      }
      feeds.state = state;
    } else {
      const key = new Float32Array(config.numLayers * batch * config.numHeads * past * d).fill(1e3);
      const value = new Float32Array(key.length).fill(-1e3);
      for (const [r, row] of rows.entries()) {
        const own = prefixStates[r]?.kv;
        if (own === undefined) continue;
        for (let layer = 0; layer < config.numLayers; layer++) {
          for (let h = 0; h < config.numHeads; h++) {
            const from = (layer * config.numHeads + h) * row.prefix * d;
            const to = ((layer * batch + r) * config.numHeads + h) * past * d;
            key.set(own.key.subarray(from, from + row.prefix * d), to);
            value.set(own.value.subarray(from, from + row.prefix * d), to);
          }
        }
      }
      feeds.kv = { key, value, length: past };
    }
    const batched = await runChunk(session, config, {
      inputIds,
      batch,
      chunk: CHUNK,
      startPos: rows.map((row) => row.prefix),
      validLen: rows.map((row) => row.valid),
      ...feeds,
    });

    for (const [r, row] of rows.entries()) {
      const sequence = sequences[r] ?? [];
      const rowLogits = batched.logits.subarray(r * vocab, (r + 1) * vocab);
      if (row.valid === 0) {
        if (attention === 'dijiang') {
          // An idle row's state passes through unchanged.
          expect(stateRow(config, batched.state ?? new Float32Array(), batch, r)).toEqual(
            stateRow(config, feeds.state ?? new Float32Array(), batch, r),
          );
        }
        continue;
      }
      const alone = await runChunk(session, config, {
        inputIds: sequence.slice(row.prefix),
        batch: 1,
        chunk: row.valid,
        startPos: [row.prefix],
        validLen: [row.valid],
        ...prefixStates[r],
      });
      expectClose(rowLogits, alone.logits, `row ${r} logits vs alone`, { rtol: 1e-5, atol: 1e-6 });
      const last = row.prefix + row.valid - 1;
      const oracle = oracleLogits(config, weights, sequence, { logitPositions: [last] });
      expectClose(rowLogits, oracle, `row ${r} logits vs oracle`);
      if (attention === 'dijiang') {
        expectClose(
          stateRow(config, batched.state ?? new Float32Array(), batch, r),
          alone.state ?? new Float32Array(),
          `row ${r} state vs alone`,
          { rtol: 1e-5, atol: 1e-7 },
        );
      } else {
        const kv = batched.kv;
        const own = alone.kv;
        expect(kv?.length).toBe(Math.max(...rows.map((other) => other.prefix + other.valid)));
        const length = row.prefix + row.valid;
        for (let layer = 0; layer < config.numLayers; layer++) {
          for (let h = 0; h < config.numHeads; h++) {
            const from = ((layer * batch + r) * config.numHeads + h) * (kv?.length ?? 0) * d;
            const to = (layer * config.numHeads + h) * (own?.length ?? 0) * d;
            expectClose(
              kv?.key.subarray(from, from + length * d) ?? [],
              own?.key.subarray(to, to + length * d) ?? [],
              `row ${r} layer ${layer} head ${h} keys vs alone`,
              { rtol: 1e-5, atol: 1e-7 },
            );
          }
        }
      }
    }
    await session.release();
  });
});
