/**
 * Re-layouts of checkpoint weights into the tensors the graph multiplies by. Each function takes
 * plain arrays and shapes and returns new arrays: no graph, no weight names. Matrices are
 * row-major; a Linear layer's weight is [out, in] as PyTorch stores it.
 */
import type { DecayTables } from '../decay.js';

/** A Linear layer's weight [rows, in] and bias [rows], as the fused Gemms take them. */
export interface LinearWeights {
  readonly weight: Float32Array;
  readonly bias: Float32Array;
  readonly rows: number;
}

/** Stacks Linear layers that read the same input into one [sum of rows, in] Gemm. */
export function stackRows(parts: readonly LinearWeights[], inFeatures: number): LinearWeights {
  const rows = parts.reduce((sum, part) => sum + part.rows, 0);
  const weight = new Float32Array(rows * inFeatures);
  const bias = new Float32Array(rows);
  let row = 0;
  for (const part of parts) {
    weight.set(part.weight, row * inFeatures);
    bias.set(part.bias, row);
    row += part.rows;
  }
  return { weight, bias, rows };
}

/**
 * Folds a LayerNorm's affine into the Linear layer that reads it, in float64:
 * `(n * w + b) W^T + c = n (W diag(w))^T + (W b + c)`. All Linear layers of a block then share
 * one unit-affine normalisation and one Gemm.
 */
export function foldNormAffine(
  linear: LinearWeights,
  normWeight: Float32Array,
  normBias: Float32Array,
): LinearWeights {
  const inFeatures = normWeight.length;
  const weight = new Float32Array(linear.weight.length);
  const bias = new Float32Array(linear.rows);
  for (let row = 0; row < linear.rows; row++) {
    let shift = linear.bias[row] ?? 0;
    for (let k = 0; k < inFeatures; k++) {
      const value = linear.weight[row * inFeatures + k] ?? 0;
      weight[row * inFeatures + k] = value * (normWeight[k] ?? 0);
      shift += value * (normBias[k] ?? 0);
    }
    bias[row] = shift;
  }
  return { weight, bias, rows: linear.rows };
}

/** The query, key and value projections of all heads, each [heads * headDim, in]. */
export interface QkvProjections {
  readonly query: LinearWeights;
  readonly key: LinearWeights;
  readonly value: LinearWeights;
}

/**
 * GPT-NeoX's query_key_value rows are [q | k | v] per head (row h * 3d + i is q of head h, dim i;
 * + d for k, + 2d for v); regroup them as all q, all k, all v, each head-major.
 */
export function regroupQkv(
  qkv: LinearWeights,
  heads: number,
  headDim: number,
  inFeatures: number,
): QkvProjections {
  const part = (offset: number): LinearWeights => {
    const rows = heads * headDim;
    const weight = new Float32Array(rows * inFeatures);
    const bias = new Float32Array(rows);
    for (let head = 0; head < heads; head++) {
      const from = head * 3 * headDim + offset;
      weight.set(
        qkv.weight.subarray(from * inFeatures, (from + headDim) * inFeatures),
        head * headDim * inFeatures,
      );
      bias.set(qkv.bias.subarray(from, from + headDim), head * headDim);
    }
    return { weight, bias, rows };
  };
  return { query: part(0), key: part(headDim), value: part(2 * headDim) };
}

/** The transpose of a [rows, columns] matrix: [columns, rows]. */
export function transposeMatrix(values: Float32Array, rows: number, columns: number): Float32Array {
  const out = new Float32Array(rows * columns);
  for (let row = 0; row < rows; row++)
    for (let column = 0; column < columns; column++)
      out[column * rows + row] = values[row * columns + column] ?? 0;
  return out;
}

/** The gate x @ W_G ([in, out], no bias) as a Linear layer: its weight is W_G transposed. */
export function gateAsLinear(gate: Float32Array, hidden: number): LinearWeights {
  return {
    weight: transposeMatrix(gate, hidden, hidden),
    bias: new Float32Array(hidden),
    rows: hidden,
  };
}

/**
 * attention.dense ([hidden, hidden]) and mlp.dense_4h_to_h ([hidden, ffn]) as one Linear layer
 * over the concatenated input [attention | mlp]: weight [hidden, hidden + ffn] (each row is the
 * dense row followed by the down row), bias the sum of both biases.
 */
export function fuseOutputProjection(
  dense: LinearWeights,
  down: LinearWeights,
  hidden: number,
  ffn: number,
): LinearWeights {
  const weight = new Float32Array(hidden * (hidden + ffn));
  for (let row = 0; row < hidden; row++) {
    weight.set(dense.weight.subarray(row * hidden, (row + 1) * hidden), row * (hidden + ffn));
    weight.set(down.weight.subarray(row * ffn, (row + 1) * ffn), row * (hidden + ffn) + hidden);
  }
  const bias = Float32Array.from(dense.bias, (value, i) => value + (down.bias[i] ?? 0));
  return { weight, bias, rows: hidden };
}

/**
 * `[M; rotate_half as a matrix times M]` ([2d, d]): with x scaled by cos and by sin side by side,
 * `[x cos, x sin] @ this = rope(x) @ M`. rotate_half(x)_j is -x_{j+r/2} for j < r/2 and
 * x_{j-r/2} for r/2 <= j < r, so row i of the lower half is +M[i + r/2] (i < r/2), -M[i - r/2]
 * (r/2 <= i < r) or 0; the sign flips and row moves are exact.
 */
export function ropeThen(matrix: Float32Array, d: number, rotary: number): Float32Array {
  const out = new Float32Array(2 * d * d);
  out.set(matrix);
  const half = rotary / 2;
  for (let i = 0; i < rotary; i++) {
    const source = i < half ? i + half : i - half;
    const sign = i < half ? 1 : -1;
    for (let j = 0; j < d; j++) out[(d + i) * d + j] = sign * (matrix[source * d + j] ?? 0);
  }
  return out;
}

/** The d x d identity. */
export function identityMatrix(d: number): Float32Array {
  const identity = new Float32Array(d * d);
  for (let i = 0; i < d; i++) identity[i * d + i] = 1;
  return identity;
}

/** The decay tables of all layers side by side, one row per position. */
export interface PositionMajorDecay {
  /** [positions, layers * heads]: log r_t of layer l, head h at t * L * H + l * H + h. */
  readonly logRatio: Float64Array;
  /** [positions, layers * heads], same order: c_t, rounded to float32. */
  readonly coefficient: Float32Array;
}

/**
 * Per-layer [positions, heads] tables as one [positions, layers * heads] table, so that one
 * Gather by position serves every layer.
 */
export function positionMajorDecay(
  tables: DecayTables,
  layers: number,
  heads: number,
  positions: number,
): PositionMajorDecay {
  const layerHeads = layers * heads;
  const logRatio = new Float64Array(positions * layerHeads);
  const coefficient = new Float32Array(positions * layerHeads);
  for (let layer = 0; layer < layers; layer++) {
    const layerLogRatio = tables.logRatio[layer] ?? new Float64Array();
    const layerCoefficient = tables.coefficient[layer] ?? new Float64Array();
    for (let t = 0; t < positions; t++) {
      for (let head = 0; head < heads; head++) {
        const at = t * layerHeads + layer * heads + head;
        logRatio[at] = layerLogRatio[t * heads + head] ?? Number.NaN;
        coefficient[at] = layerCoefficient[t * heads + head] ?? Number.NaN;
      }
    }
  }
  return { logRatio, coefficient };
}
