/**
 * Weight precisions of the CPU graph: the block quantizer's arithmetic, checked element by element
 * with a decoder written here, and each precision's graph against the float64 oracle (which always
 * computes with the original float32 weights) under a tolerance derived from its rounding error.
 */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  decodeModel,
  encodeStandaloneGraph,
  TensorDataType,
  loadBundle,
  logSoftmaxRows,
  oracleLogits,
  presetConfig,
  quantizeBlocks,
  Rng,
  writeBundle,
  writeOnnxModel,
  type AttentionKind,
  type BlockQuantized,
  type WeightPrecision,
} from '#model';
import {
  float32Tensor,
  openSession,
  runChunk,
  runSession,
  type InferenceSession,
} from '#engine/runtime';
import { createGraphContext } from '../src/onnx/graph-context.js';
import {
  gatherRows,
  multiplyTransposed,
  storeMatrix,
  type MatrixUse,
} from '../src/onnx/stored-weights.js';
import { randomIds, testWeights } from './support.js';

/** Element (row, column) as the kernels read it, decoded here from the packed bytes. */
function decoded(q: BlockQuantized, row: number, column: number): { code: number; value: number } {
  const block = Math.floor(column / q.blockSize);
  const offset = column % q.blockSize;
  const blockStart = (row * q.blocksPerRow + block) * ((q.blockSize * q.bits) / 8);
  const byte = q.data[blockStart + (q.bits === 8 ? offset : Math.floor(offset / 2))] ?? NaN;
  // 4-bit: the even element of each pair in the low nibble.
  const code = q.bits === 8 ? byte : offset % 2 === 0 ? byte % 16 : Math.floor(byte / 16);
  const scale = q.scales[row * q.blocksPerRow + block] ?? NaN;
  return { code, value: (code - 2 ** (q.bits - 1)) * scale };
}

describe('block quantizer', () => {
  it.each([8, 4] as const)(
    'int%i: every element within half its block scale, scales as small as that allows',
    (bits) => {
      const rows = 6;
      const columns = 80; // two whole blocks of 32 and a partial one
      const rng = new Rng(bits);
      const values = new Float32Array(rows * columns);
      for (let row = 0; row < rows; row++) {
        const magnitude = 10 ** (row - 3); // 1e-3 ... 1e2
        for (let column = 0; column < columns; column++)
          values[row * columns + column] = row === 4 && column < 32 ? 0 : magnitude * rng.normal();
      }
      const q = quantizeBlocks(values, rows, columns, bits);
      const qMax = 2 ** (bits - 1) - 1;
      expect(q.blocksPerRow).toBe(3);
      expect(q.data.length).toBe((rows * 3 * 32 * bits) / 8);
      for (let row = 0; row < rows; row++) {
        for (let block = 0; block < 3; block++) {
          const scale = q.scales[row * 3 + block] ?? NaN;
          const members = Array.from(
            values.subarray(
              row * columns + block * 32,
              row * columns + Math.min(80, block * 32 + 32),
            ),
          );
          const absMax = Math.max(...members.map(Math.abs));
          // Large enough that no weight is clamped, and the next float32 below would not be.
          expect(scale * qMax).toBeGreaterThanOrEqual(absMax);
          if (absMax > 0) expect(Math.fround(scale * (1 - 2 ** -24)) * qMax).toBeLessThan(absMax);
          else expect(scale).toBe(0);
          for (let offset = 0; offset < 32; offset++) {
            const column = block * 32 + offset;
            if (column >= columns) {
              // Padding dequantizes to exactly zero.
              expect(decoded(q, row, column).code).toBe(2 ** (bits - 1));
              continue;
            }
            const { code, value } = decoded(q, row, column);
            expect(code).toBeGreaterThanOrEqual(1);
            expect(code).toBeLessThanOrEqual(2 * qMax + 1);
            const weight = values[row * columns + column] ?? NaN;
            expect(Math.abs(weight - value)).toBeLessThanOrEqual(scale / 2);
          }
        }
      }
    },
  );
});

/**
 * Relative RMS rounding error of one weight (or activation) at each precision. Rounding to a grid
 * of step s leaves a uniform error of RMS s / sqrt(12); for Gaussian values in blocks of 32 the
 * block's largest magnitude is about 2.4 sigma, so s = 2.4 sigma / qMax. fp16 keeps 11 significant
 * bits: a relative error uniform in +-2^-11, RMS 2^-11 / sqrt(3). MatMulNBits also rounds each
 * block of 32 activations to int8 (accuracy level 4), which adds the int8 figure in quadrature.
 */
const INT8_RELATIVE_ERROR = 2.4 / (127 * Math.sqrt(12));
const RELATIVE_ERROR: Record<Exclude<WeightPrecision, 'fp32'>, number> = {
  fp16: 2 ** -11 / Math.sqrt(3),
  int8: Math.hypot(INT8_RELATIVE_ERROR, INT8_RELATIVE_ERROR),
  int4: Math.hypot(2.4 / (7 * Math.sqrt(12)), INT8_RELATIVE_ERROR),
};
/**
 * Each token's logits pass through 2L + 2 quantized products (embedding, two fused Gemms per
 * layer, LM head); independent roundings add in quadrature, each moving the logits by its relative
 * error times their RMS. That predicts the RMS error of the log-probs: sigma = relative error x
 * sqrt(2L + 2) x RMS(logits). Measured here: 0.7 to 1.0 sigma at every precision. The bounds leave
 * room for what compounds through the layers: RMS error <= 1.5 sigma, largest error <= 5 sigma
 * (measured: at most 3.9 sigma, int4). A mis-packed or mis-scaled matrix moves the log-probs by
 * about RMS(logits), 4 sigma or more even at int4.
 */
const RMS_BOUND = 1.5;
const MAX_BOUND = 5;

const cases: [AttentionKind, Exclude<WeightPrecision, 'fp32'>][] = [
  ['dijiang', 'fp16'],
  ['dijiang', 'int8'],
  ['dijiang', 'int4'],
  ['softmax', 'int8'],
  ['softmax', 'int4'],
];

describe('weight precisions against the float64 oracle', () => {
  it.each(cases)(
    'tiny %s with %s weights: every log-prob within the derived tolerance',
    async (attention, weightPrecision) => {
      const config = presetConfig('tiny', attention);
      const weights = testWeights(config, 11);
      const length = 64;
      const ids = randomIds(length, config.vocabSize, 5);
      const targets = [...ids.slice(1), 0];
      const dir = await mkdtemp(join(tmpdir(), 'dijiang-weights-'));
      const modelPath = join(dir, 'model.onnx');
      await writeOnnxModel(config, weights, modelPath, { weights: weightPrecision });
      const session = await openSession(modelPath, { intraOpNumThreads: 2 });
      const request = {
        inputIds: ids,
        batch: 1,
        chunk: length,
        startPos: [0],
        validLen: [length],
      };
      const scored = await runChunk(session, config, { ...request, targetIds: targets });
      const unscored = await runChunk(session, config, request);
      await session.release();

      const vocab = config.vocabSize;
      const logits = oracleLogits(config, weights, ids);
      let squares = 0;
      for (const value of logits) squares += value * value;
      const sigma =
        RELATIVE_ERROR[weightPrecision] *
        Math.sqrt(2 * config.numLayers + 2) *
        Math.sqrt(squares / logits.length);
      const expected = logSoftmaxRows(logits, vocab);
      const actualLast = logSoftmaxRows(Float64Array.from(scored.logits), vocab);
      const logprobs = scored.targetLogprobs ?? new Float32Array();
      const errors = [
        ...Array.from(
          actualLast,
          (value, i) => value - (expected[(length - 1) * vocab + i] ?? NaN),
        ),
        ...targets
          .slice(0, length - 1)
          .map((target, t) => (logprobs[t] ?? NaN) - (expected[t * vocab + target] ?? NaN)),
      ];
      const rms = Math.sqrt(errors.reduce((sum, error) => sum + error * error, 0) / errors.length);
      expect(rms).toBeLessThanOrEqual(RMS_BOUND * sigma);
      expect(Math.max(...errors.map(Math.abs))).toBeLessThanOrEqual(MAX_BOUND * sigma);
      // Scoring nothing (zero target columns) runs the LM head on no rows and changes no logits.
      expect(unscored.targetLogprobs).toBeUndefined();
      expect(Array.from(unscored.logits)).toEqual(Array.from(scored.logits));
    },
  );
});

describe('bundles with quantized weights', () => {
  it('records the precision, shrinks the CPU graph and keeps the CUDA graph all-fp16', async () => {
    const config = presetConfig('tiny', 'dijiang');
    const weights = testWeights(config, 2);
    const sizes = new Map<WeightPrecision, number>();
    for (const precision of ['fp32', 'fp16', 'int8', 'int4'] as const) {
      const dir = await mkdtemp(join(tmpdir(), 'dijiang-weights-bundle-'));
      const manifest = await writeBundle(dir, config, weights, {
        id: `tiny-${precision}`,
        weights: precision,
        fp16: true,
      });
      // fp32 bundles keep the manifest every earlier bundle has: no weights field.
      expect(manifest.weights).toBe(precision === 'fp32' ? undefined : precision);
      const bundle = await loadBundle(dir);
      expect(bundle.manifest.weights).toBe(manifest.weights);
      sizes.set(precision, manifest.files['model.onnx']?.bytes ?? NaN);
      const cpuOps = new Set(
        decodeModel(await readFile(bundle.graphPath('fp32'))).graph.node.map((node) => node.opType),
      );
      const cudaOps = new Set(
        decodeModel(await readFile(bundle.graphPath('fp16'))).graph.node.map((node) => node.opType),
      );
      const quantized = precision === 'int8' || precision === 'int4';
      expect(cpuOps.has('MatMulNBits')).toBe(quantized);
      expect(cpuOps.has('GatherBlockQuantized')).toBe(quantized);
      expect(cudaOps.has('MatMulNBits')).toBe(false);
      expect(manifest.files['model-fp16.onnx']?.bytes).toBeGreaterThan(0);
    }
    const fp32 = sizes.get('fp32') ?? NaN;
    // The large matrices shrink to 1/2, 9/32 (8 bits and a 32-bit scale per 32) and 5/32; the rest
    // (decay tables, norms, biases: 0.11 of this tiny graph) stays float32.
    expect((sizes.get('fp16') ?? NaN) / fp32).toBeLessThan(0.11 + 0.89 / 2 + 0.01);
    expect((sizes.get('int8') ?? NaN) / fp32).toBeLessThan(0.11 + (0.89 * 9) / 32 + 0.01);
    expect((sizes.get('int4') ?? NaN) / fp32).toBeLessThan(0.11 + (0.89 * 5) / 32 + 0.01);
  });
});

/** A graph of one stored matrix read by one op: `gather` rows of it, or `multiply` by it. */
async function singleOpSession(
  weightPrecision: 'int8' | 'int4',
  use: MatrixUse,
  matrix: Float32Array,
  rows: number,
  columns: number,
): Promise<InferenceSession> {
  const config = presetConfig('tiny', 'dijiang');
  const ctx = createGraphContext(config, new Map(), 'fp32', weightPrecision);
  const { g } = ctx;
  const stored = storeMatrix(ctx, 'w', matrix, rows, columns, use);
  if (use === 'gather') {
    // Row numbers come in as float32 (the runtime's feed helpers): exact below 2^24.
    const ids = g.op('Cast', [g.input('ids', TensorDataType.Float, ['n'])], {
      to: TensorDataType.Int64,
    });
    g.output('y', gatherRows(ctx, stored, ids), TensorDataType.Float, ['n', columns]);
  } else {
    const x = g.input('x', TensorDataType.Float, ['m', columns]);
    g.output('y', multiplyTransposed(ctx, x, stored), TensorDataType.Float, ['m', rows]);
  }
  const bytes = encodeStandaloneGraph(g, 'single-op', 'test');
  const dir = await mkdtemp(join(tmpdir(), 'dijiang-single-op-'));
  await writeFile(join(dir, 'op.onnx'), bytes);
  return openSession(join(dir, 'op.onnx'), { intraOpNumThreads: 1 });
}

describe('the quantized ops read the quantizer layout', () => {
  const rows = 24;
  const columns = 96;
  const rng = new Rng(7);
  const matrix = Float32Array.from({ length: rows * columns }, () => rng.normal());

  it.each(['int8', 'int4'] as const)(
    '%s: GatherBlockQuantized returns the dequantized rows exactly',
    async (precision) => {
      const q = quantizeBlocks(matrix, rows, columns, precision === 'int8' ? 8 : 4);
      const session = await singleOpSession(precision, 'gather', matrix, rows, columns);
      const ids = [3, 0, 23, 3];
      const { y } = await runSession(session, {
        ids: float32Tensor(Float32Array.from(ids), [ids.length]),
      });
      await session.release();
      const expected = ids.flatMap((row) =>
        Array.from({ length: columns }, (_, column) => Math.fround(decoded(q, row, column).value)),
      );
      expect(Array.from(y?.data as Float32Array)).toEqual(expected);
    },
  );

  it.each(['int8', 'int4'] as const)(
    '%s: MatMulNBits computes x W^T of the dequantized W within its int8 rounding of x',
    async (precision) => {
      const q = quantizeBlocks(matrix, rows, columns, precision === 'int8' ? 8 : 4);
      const session = await singleOpSession(precision, 'multiply', matrix, rows, columns);
      const m = 3;
      const x = Float32Array.from({ length: m * columns }, () => rng.normal());
      const { y } = await runSession(session, { x: float32Tensor(x, [m, columns]) });
      await session.release();
      const actual = y?.data as Float32Array;
      for (let i = 0; i < m; i++) {
        for (let n = 0; n < rows; n++) {
          // Accuracy level 4 rounds each block of 32 activations to int8 (step max|x| / 127):
          // each product may move by |w| times half that step.
          let exact = 0;
          let bound = 0;
          for (let block = 0; block < columns / 32; block++) {
            const xs = x.subarray(i * columns + block * 32, i * columns + block * 32 + 32);
            const halfStep = Math.max(...Array.from(xs, Math.abs)) / 127 / 2;
            for (let k = 0; k < 32; k++) {
              const w = decoded(q, n, block * 32 + k).value;
              exact += w * (xs[k] ?? NaN);
              bound += Math.abs(w) * halfStep;
            }
          }
          expect(Math.abs((actual[i * rows + n] ?? NaN) - exact)).toBeLessThanOrEqual(
            bound + 1e-5 * Math.abs(exact),
          );
        }
      }
    },
  );
});
