import { describe, expect, it } from 'vitest';
import {
  foldNormAffine,
  fuseOutputProjection,
  gateAsLinear,
  identityMatrix,
  positionMajorDecay,
  regroupQkv,
  ropeThen,
  stackRows,
  transposeMatrix,
  type LinearWeights,
} from '../src/onnx/weight-layout.js';

/** 0, 1, 2, ... scaled and shifted: distinct values, so a moved element cannot go unnoticed. */
function arange(length: number, scale = 1, shift = 0): Float32Array {
  return Float32Array.from({ length }, (_, i) => shift + scale * i);
}

/** y = W x + b for a Linear layer with weight [rows, in], in float64. */
function applyLinear(linear: LinearWeights, x: readonly number[]): number[] {
  const inFeatures = x.length;
  return Array.from({ length: linear.rows }, (_, row) => {
    let sum = linear.bias[row] ?? Number.NaN;
    for (let k = 0; k < inFeatures; k++)
      sum += (linear.weight[row * inFeatures + k] ?? Number.NaN) * (x[k] ?? Number.NaN);
    return sum;
  });
}

function expectAllClose(actual: readonly number[], expected: readonly number[]): void {
  expect(actual).toHaveLength(expected.length);
  actual.forEach((value, i) => {
    expect(value).toBeCloseTo(expected[i] ?? Number.NaN, 3);
  });
}

describe('regroupQkv', () => {
  it('takes q, k and v of each head from the per-head interleaved rows, heads in order', () => {
    // Two heads of one dim, one input feature: rows are [q0, k0, v0, q1, k1, v1].
    const qkv = {
      weight: Float32Array.of(10, 20, 30, 11, 21, 31),
      bias: arange(6, 1, 100),
      rows: 6,
    };
    const { query, key, value } = regroupQkv(qkv, 2, 1, 1);
    expect(Array.from(query.weight)).toEqual([10, 11]);
    expect(Array.from(key.weight)).toEqual([20, 21]);
    expect(Array.from(value.weight)).toEqual([30, 31]);
    expect(Array.from(query.bias)).toEqual([100, 103]);
    expect(Array.from(key.bias)).toEqual([101, 104]);
    expect(Array.from(value.bias)).toEqual([102, 105]);
  });

  it('matches the [B, T, H, 3d] view of query_key_value element by element', () => {
    const heads = 3;
    const d = 2;
    const inFeatures = 4;
    const qkv = {
      weight: arange(3 * heads * d * inFeatures),
      bias: arange(3 * heads * d, 1, 1000),
      rows: 3 * heads * d,
    };
    const parts = regroupQkv(qkv, heads, d, inFeatures);
    const byKind = [parts.query, parts.key, parts.value];
    byKind.forEach((part, kind) => {
      expect(part.rows).toBe(heads * d);
      for (let head = 0; head < heads; head++) {
        for (let i = 0; i < d; i++) {
          // Output channel h * 3d + kind * d + i of the checkpoint's Linear.
          const source = head * 3 * d + kind * d + i;
          const row = head * d + i;
          expect(part.bias[row]).toBe(qkv.bias[source]);
          for (let k = 0; k < inFeatures; k++)
            expect(part.weight[row * inFeatures + k]).toBe(qkv.weight[source * inFeatures + k]);
        }
      }
    });
  });
});

describe('transposeMatrix and gateAsLinear', () => {
  it('transposes a non-square matrix', () => {
    // [[0, 1, 2], [3, 4, 5]] -> [[0, 3], [1, 4], [2, 5]]
    expect(Array.from(transposeMatrix(arange(6), 2, 3))).toEqual([0, 3, 1, 4, 2, 5]);
    const rows = 3;
    const columns = 5;
    const values = arange(rows * columns, 1, 7);
    const transposed = transposeMatrix(values, rows, columns);
    for (let row = 0; row < rows; row++)
      for (let column = 0; column < columns; column++)
        expect(transposed[column * rows + row]).toBe(values[row * columns + column]);
  });

  it('the gate as a Linear layer computes x @ W_G with no bias', () => {
    const hidden = 3;
    const gate = Float32Array.of(1, 2, 3, -4, 5, 6, 7, 8, -9); // W_G [in, out], not symmetric
    const x = [0.5, -1, 2];
    const expected = Array.from({ length: hidden }, (_, n) =>
      x.reduce((sum, xk, k) => sum + xk * (gate[k * hidden + n] ?? Number.NaN), 0),
    );
    const linear = gateAsLinear(gate, hidden);
    expect(Array.from(linear.bias)).toEqual([0, 0, 0]);
    expect(applyLinear(linear, x)).toEqual(expected);
  });
});

describe('stackRows', () => {
  it('puts each part under the one before, weights and biases alike', () => {
    const inFeatures = 2;
    const first = { weight: arange(2 * inFeatures), bias: Float32Array.of(-1, -2), rows: 2 };
    const second = {
      weight: arange(3 * inFeatures, 1, 50),
      bias: Float32Array.of(-3, -4, -5),
      rows: 3,
    };
    const stacked = stackRows([first, second], inFeatures);
    expect(stacked.rows).toBe(5);
    expect(Array.from(stacked.bias)).toEqual([-1, -2, -3, -4, -5]);
    expect(Array.from(stacked.weight)).toEqual([0, 1, 2, 3, 50, 51, 52, 53, 54, 55]);
  });
});

describe('foldNormAffine', () => {
  it('scales each input column by the norm weight and moves the norm bias into the bias', () => {
    const rows = 2;
    const inFeatures = 3;
    const linear = {
      weight: arange(rows * inFeatures, 1, 1),
      bias: Float32Array.of(0.5, -0.5),
      rows,
    };
    const normWeight = Float32Array.of(2, -1, 0.5);
    const normBias = Float32Array.of(0.25, 1, -2);
    const folded = foldNormAffine(linear, normWeight, normBias);
    for (let row = 0; row < rows; row++) {
      let bias = linear.bias[row] ?? Number.NaN;
      for (let k = 0; k < inFeatures; k++) {
        const w = linear.weight[row * inFeatures + k] ?? Number.NaN;
        expect(folded.weight[row * inFeatures + k]).toBe(
          Math.fround(w * (normWeight[k] ?? Number.NaN)),
        );
        bias += w * (normBias[k] ?? Number.NaN);
      }
      expect(folded.bias[row]).toBe(Math.fround(bias));
    }
    // The identity it relies on: Linear(n * w + b) = folded(n).
    const normalized = [0.3, -1.2, 0.7];
    const affine = normalized.map((n, k) => n * (normWeight[k] ?? 0) + (normBias[k] ?? 0));
    expectAllClose(applyLinear(folded, normalized), applyLinear(linear, affine));
  });
});

describe('fuseOutputProjection', () => {
  it('is attention.dense on the first hidden inputs plus the MLP down on the rest', () => {
    const hidden = 2;
    const ffn = 3;
    const dense = {
      weight: arange(hidden * hidden, 1, 1),
      bias: Float32Array.of(0.5, 1.5),
      rows: hidden,
    };
    const down = {
      weight: arange(hidden * ffn, 1, 10),
      bias: Float32Array.of(-2, 4),
      rows: hidden,
    };
    const fused = fuseOutputProjection(dense, down, hidden, ffn);
    expect(fused.rows).toBe(hidden);
    // Row r is dense row r followed by down row r.
    expect(Array.from(fused.weight)).toEqual([1, 2, 10, 11, 12, 3, 4, 13, 14, 15]);
    expect(Array.from(fused.bias)).toEqual([-1.5, 5.5]);
    const attention = [0.25, -1];
    const mlp = [2, 0.5, -3];
    const separate = applyLinear(dense, attention).map(
      (value, row) => value + (applyLinear(down, mlp)[row] ?? Number.NaN),
    );
    expectAllClose(applyLinear(fused, [...attention, ...mlp]), separate);
  });
});

describe('ropeThen', () => {
  /** NeoX RoPE by its definition: x cos + rotate_half(x) sin on the first `rotary` dims. */
  function rope(x: readonly number[], angles: readonly number[], rotary: number): number[] {
    const half = rotary / 2;
    return x.map((xj, j) => {
      if (j >= rotary) return xj;
      const rotated = j < half ? -(x[j + half] ?? Number.NaN) : (x[j - half] ?? Number.NaN);
      const angle = angles[j] ?? Number.NaN;
      return xj * Math.cos(angle) + rotated * Math.sin(angle);
    });
  }

  /** Row vector times a [rows, d] matrix. */
  function times(x: readonly number[], matrix: Float32Array, d: number): number[] {
    return Array.from({ length: d }, (_, j) =>
      x.reduce((sum, xi, i) => sum + xi * (matrix[i * d + j] ?? Number.NaN), 0),
    );
  }

  it('[x cos, x sin] @ ropeThen(M) = rope(x) @ M, with cos 1 and sin 0 past the rotary dims', () => {
    const d = 6;
    const rotary = 4;
    const matrix = Float32Array.from({ length: d * d }, (_, i) => ((i * 7) % 11) - 5);
    const x = [0.9, -0.4, 1.3, 0.2, -1.1, 0.6];
    // Angles of a position: the same frequency for dims i and i + rotary / 2.
    const angles = [0.3, 1.7, 0.3, 1.7, 0, 0];
    const scaled = [
      ...x.map((xj, j) => xj * Math.cos(angles[j] ?? 0)),
      ...x.map((xj, j) => xj * Math.sin(angles[j] ?? 0)),
    ];
    const combined = ropeThen(matrix, d, rotary);
    expect(combined).toHaveLength(2 * d * d);
    expectAllClose(times(scaled, combined, d), times(rope(x, angles, rotary), matrix, d));
  });

  it('keeps M on top, moves rows with their signs below, and leaves the non-rotary rows zero', () => {
    const d = 4;
    const rotary = 2;
    const matrix = arange(d * d, 1, 1);
    const combined = Array.from(ropeThen(matrix, d, rotary));
    expect(combined.slice(0, d * d)).toEqual(Array.from(matrix));
    // Lower row 0 is +M[1], lower row 1 is -M[0], lower rows 2 and 3 are zero.
    expect(combined.slice(d * d)).toEqual([5, 6, 7, 8, -1, -2, -3, -4, 0, 0, 0, 0, 0, 0, 0, 0]);
  });
});

describe('identityMatrix', () => {
  it('is the d x d identity (RoPE alone through ropeThen, for softmax attention)', () => {
    expect(Array.from(identityMatrix(3))).toEqual([1, 0, 0, 0, 1, 0, 0, 0, 1]);
  });
});

describe('positionMajorDecay', () => {
  it('puts layer l, head h of position t at t * L * H + l * H + h', () => {
    const layers = 2;
    const heads = 3;
    const positions = 4;
    // Distinct per (layer, position, head); c values chosen to need float32 rounding.
    const value = (layer: number, t: number, head: number): number => 1000 * layer + 10 * t + head;
    const perLayer = (make: (layer: number, t: number, head: number) => number): Float64Array[] =>
      Array.from({ length: layers }, (_, layer) =>
        Float64Array.from({ length: positions * heads }, (_, i) =>
          make(layer, Math.floor(i / heads), i % heads),
        ),
      );
    const coefficientOf = (layer: number, t: number, head: number): number =>
      value(layer, t, head) + 0.1;
    const table = positionMajorDecay(
      { logRatio: perLayer(value), coefficient: perLayer(coefficientOf) },
      layers,
      heads,
      positions,
    );
    expect(table.logRatio).toHaveLength(positions * layers * heads);
    for (let t = 0; t < positions; t++)
      for (let layer = 0; layer < layers; layer++)
        for (let head = 0; head < heads; head++) {
          const at = t * layers * heads + layer * heads + head;
          expect(table.logRatio[at]).toBe(value(layer, t, head));
          expect(table.coefficient[at]).toBe(Math.fround(coefficientOf(layer, t, head)));
        }
    // One row per position: position 1 holds layer 0's heads, then layer 1's.
    expect(Array.from(table.logRatio.subarray(6, 12))).toEqual([10, 11, 12, 1010, 1011, 1012]);
  });
});
