/**
 * Float64 reference of the model, independent of ONNX, used as the oracle in tests (DIJIANG.md §5).
 *
 * DiJiang attention follows the released code's parallel form: an L x L sum with the D1/D2 tables
 * for positions below `maxPositionEmbeddings`. Past the tables (our extension, DIJIANG.md §4) it
 * continues recurrently with the last ratio r = D1[M-1] / D1[M-2] and the last c = D1[M-1] D2[M-1],
 * starting from the state R_{M-1} = D1[M-1] sum_{s<M} D2[s] phi(k_s)^T v_s of the parallel form.
 * Softmax attention is the standard causal GPT-NeoX attention with 1/sqrt(d) scaling.
 * Slow by design: plain loops, everything in float64.
 */
import { headDim, rotaryDims, type ModelConfig } from './config.js';
import { getTensor, layerPrefix, type Weights } from './weights.js';

export interface OracleOptions {
  /** Positions whose logits are returned, in this order. @defaultValue every position */
  logitPositions?: readonly number[];
}

/**
 * Logits of the model for the sequence `ids` starting at position 0: a Float64Array
 * [positions, vocab] with one row per entry of `options.logitPositions` (every position by default).
 */
export function oracleLogits(
  config: ModelConfig,
  weights: Weights,
  ids: ArrayLike<number>,
  options: OracleOptions = {},
): Float64Array {
  const length = ids.length;
  const hidden = config.hiddenSize;
  const param = (name: string, shape: readonly number[]): Float32Array =>
    getTensor(weights, name, shape).data;

  const embedIn = param('gpt_neox.embed_in.weight', [config.vocabSize, hidden]);
  const h = new Float64Array(length * hidden);
  for (let t = 0; t < length; t++) {
    const id = ids[t] ?? -1;
    if (!Number.isInteger(id) || id < 0 || id >= config.vocabSize) {
      throw new Error(
        `token id ${id} at position ${t} is outside the vocabulary [0, ${config.vocabSize})`,
      );
    }
    for (let i = 0; i < hidden; i++) h[t * hidden + i] = embedIn[id * hidden + i] ?? 0;
  }

  for (let layer = 0; layer < config.numLayers; layer++) {
    const p = layerPrefix(layer);
    const ln1 = layerNorm(
      h,
      hidden,
      param(`${p}input_layernorm.weight`, [hidden]),
      param(`${p}input_layernorm.bias`, [hidden]),
      config.layerNormEps,
    );
    const ln2 = layerNorm(
      h,
      hidden,
      param(`${p}post_attention_layernorm.weight`, [hidden]),
      param(`${p}post_attention_layernorm.bias`, [hidden]),
      config.layerNormEps,
    );
    const attention =
      config.attention === 'dijiang'
        ? dijiangAttention(config, weights, layer, ln1)
        : softmaxAttention(config, weights, layer, ln1);
    const ffn = config.intermediateSize;
    const up = linear(
      ln2,
      hidden,
      param(`${p}mlp.dense_h_to_4h.weight`, [ffn, hidden]),
      param(`${p}mlp.dense_h_to_4h.bias`, [ffn]),
      ffn,
    );
    for (let i = 0; i < up.length; i++) up[i] = gelu(up[i] ?? 0);
    const mlp = linear(
      up,
      ffn,
      param(`${p}mlp.dense_4h_to_h.weight`, [hidden, ffn]),
      param(`${p}mlp.dense_4h_to_h.bias`, [hidden]),
      hidden,
    );
    for (let i = 0; i < h.length; i++) h[i] = (h[i] ?? 0) + (attention[i] ?? 0) + (mlp[i] ?? 0);
  }

  const positions = options.logitPositions ?? Array.from({ length }, (_, t) => t);
  const selected = new Float64Array(positions.length * hidden);
  positions.forEach((position, row) => {
    if (!Number.isInteger(position) || position < 0 || position >= length) {
      throw new Error(`logit position ${position} is outside the sequence [0, ${length})`);
    }
    selected.set(h.subarray(position * hidden, (position + 1) * hidden), row * hidden);
  });
  const final = layerNorm(
    selected,
    hidden,
    param('gpt_neox.final_layer_norm.weight', [hidden]),
    param('gpt_neox.final_layer_norm.bias', [hidden]),
    config.layerNormEps,
  );
  return linear(
    final,
    hidden,
    param('embed_out.weight', [config.vocabSize, hidden]),
    undefined,
    config.vocabSize,
  );
}

/** Per-token log-softmax of oracle logits [rows, vocab], in place. */
export function logSoftmaxRows(logits: Float64Array, vocabSize: number): Float64Array {
  for (let row = 0; row < logits.length / vocabSize; row++) {
    const values = logits.subarray(row * vocabSize, (row + 1) * vocabSize);
    let max = -Infinity;
    for (const value of values) max = Math.max(max, value);
    let sum = 0;
    for (const value of values) sum += Math.exp(value - max);
    const logSum = max + Math.log(sum);
    for (let i = 0; i < values.length; i++) values[i] = (values[i] ?? 0) - logSum;
  }
  return logits;
}

function layerNorm(
  x: Float64Array,
  width: number,
  weight: Float32Array,
  bias: Float32Array,
  eps: number,
): Float64Array {
  const out = new Float64Array(x.length);
  for (let row = 0; row < x.length / width; row++) {
    const offset = row * width;
    let mean = 0;
    for (let i = 0; i < width; i++) mean += x[offset + i] ?? 0;
    mean /= width;
    let variance = 0;
    for (let i = 0; i < width; i++) variance += ((x[offset + i] ?? 0) - mean) ** 2;
    variance /= width;
    const scale = 1 / Math.sqrt(variance + eps);
    for (let i = 0; i < width; i++) {
      out[offset + i] = ((x[offset + i] ?? 0) - mean) * scale * (weight[i] ?? 0) + (bias[i] ?? 0);
    }
  }
  return out;
}

/** Float64 copies of float32 weights, made once per tensor (mixed-type loops are several times slower). */
const float64Copies = new WeakMap<Float32Array, Float64Array>();

function asFloat64(values: Float32Array): Float64Array {
  let copy = float64Copies.get(values);
  if (copy === undefined) {
    copy = Float64Array.from(values);
    float64Copies.set(values, copy);
  }
  return copy;
}

/** y = x W^T + b with W in torch's [out, in] layout. */
function linear(
  x: Float64Array,
  inFeatures: number,
  weight32: Float32Array,
  bias: Float32Array | undefined,
  outFeatures: number,
): Float64Array {
  const weight = asFloat64(weight32);
  const rows = x.length / inFeatures;
  const out = new Float64Array(rows * outFeatures);
  for (let row = 0; row < rows; row++) {
    const input = x.subarray(row * inFeatures, (row + 1) * inFeatures);
    for (let o = 0; o < outFeatures; o++) {
      out[row * outFeatures + o] = (bias?.[o] ?? 0) + dot(input, weight, o * inFeatures);
    }
  }
  return out;
}

/** sum_i a[i] * b[offset + i] over a's length, four partial sums at a time. */
function dot(a: Float64Array, b: Float64Array, offset: number): number {
  const n = a.length;
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    s0 += (a[i] ?? 0) * (b[offset + i] ?? 0);
    s1 += (a[i + 1] ?? 0) * (b[offset + i + 1] ?? 0);
    s2 += (a[i + 2] ?? 0) * (b[offset + i + 2] ?? 0);
    s3 += (a[i + 3] ?? 0) * (b[offset + i + 3] ?? 0);
  }
  for (; i < n; i++) s0 += (a[i] ?? 0) * (b[offset + i] ?? 0);
  return s0 + s1 + s2 + s3;
}

/** erf(x) = 2/sqrt(pi) e^{-x^2} sum_n 2^n x^{2n+1} / (1*3*...*(2n+1)): all terms positive. */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax >= 6) return Math.sign(x);
  let term = ax;
  let sum = ax;
  for (let n = 1; term > 1e-17 * sum; n++) {
    term *= (2 * ax * ax) / (2 * n + 1);
    sum += term;
  }
  return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * sum;
}

/** Exact (erf) GELU. */
function gelu(x: number): number {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

interface HeadProjections {
  /** [numHeads, length, d] after RoPE. */
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
}

/** QKV projection, split per head (interleaved [H, 3d] layout), RoPE on the first r dims. */
function projectHeads(
  config: ModelConfig,
  weights: Weights,
  layer: number,
  x: Float64Array,
): HeadProjections {
  const hidden = config.hiddenSize;
  const d = headDim(config);
  const heads = config.numHeads;
  const length = x.length / hidden;
  const p = layerPrefix(layer);
  const qkv = linear(
    x,
    hidden,
    getTensor(weights, `${p}attention.query_key_value.weight`, [3 * hidden, hidden]).data,
    getTensor(weights, `${p}attention.query_key_value.bias`, [3 * hidden]).data,
    3 * hidden,
  );
  const q = new Float64Array(heads * length * d);
  const k = new Float64Array(heads * length * d);
  const v = new Float64Array(heads * length * d);
  for (let h = 0; h < heads; h++) {
    for (let t = 0; t < length; t++) {
      const source = t * 3 * hidden + h * 3 * d;
      const target = (h * length + t) * d;
      for (let i = 0; i < d; i++) {
        q[target + i] = qkv[source + i] ?? 0;
        k[target + i] = qkv[source + d + i] ?? 0;
        v[target + i] = qkv[source + 2 * d + i] ?? 0;
      }
    }
  }
  const rotary = rotaryDims(config);
  const half = rotary / 2;
  const cos = new Float64Array(half);
  const sin = new Float64Array(half);
  for (let t = 0; t < length; t++) {
    for (let i = 0; i < half; i++) {
      const angle = t * config.rotaryBase ** (-(2 * i) / rotary);
      cos[i] = Math.cos(angle);
      sin[i] = Math.sin(angle);
    }
    for (let h = 0; h < heads; h++) {
      const offset = (h * length + t) * d;
      for (const tensor of [q, k]) {
        for (let i = 0; i < half; i++) {
          const first = tensor[offset + i] ?? 0;
          const second = tensor[offset + half + i] ?? 0;
          const c = cos[i] ?? 0;
          const s = sin[i] ?? 0;
          // x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1]
          tensor[offset + i] = first * c - second * s;
          tensor[offset + half + i] = second * c + first * s;
        }
      }
    }
  }
  return { q, k, v };
}

/** Merges heads [numHeads, length, d] into channels [length, hidden] (channel = h * d + i). */
function mergeHeads(values: Float64Array, heads: number, length: number, d: number): Float64Array {
  const merged = new Float64Array(length * heads * d);
  for (let h = 0; h < heads; h++) {
    for (let t = 0; t < length; t++) {
      for (let i = 0; i < d; i++) {
        merged[t * heads * d + h * d + i] = values[(h * length + t) * d + i] ?? 0;
      }
    }
  }
  return merged;
}

function outputProjection(
  config: ModelConfig,
  weights: Weights,
  layer: number,
  x: Float64Array,
): Float64Array {
  const hidden = config.hiddenSize;
  const p = layerPrefix(layer);
  return linear(
    x,
    hidden,
    getTensor(weights, `${p}attention.dense.weight`, [hidden, hidden]).data,
    getTensor(weights, `${p}attention.dense.bias`, [hidden]).data,
    hidden,
  );
}

function softmaxAttention(
  config: ModelConfig,
  weights: Weights,
  layer: number,
  x: Float64Array,
): Float64Array {
  const d = headDim(config);
  const heads = config.numHeads;
  const length = x.length / config.hiddenSize;
  const { q, k, v } = projectHeads(config, weights, layer, x);
  const out = new Float64Array(heads * length * d);
  const scores = new Float64Array(length);
  const scale = 1 / Math.sqrt(d);
  for (let h = 0; h < heads; h++) {
    for (let t = 0; t < length; t++) {
      const qOffset = (h * length + t) * d;
      const query = q.subarray(qOffset, qOffset + d);
      let max = -Infinity;
      for (let s = 0; s <= t; s++) {
        const score = dot(query, k, (h * length + s) * d) * scale;
        scores[s] = score;
        max = Math.max(max, score);
      }
      let total = 0;
      for (let s = 0; s <= t; s++) {
        const weight = Math.exp((scores[s] ?? 0) - max);
        scores[s] = weight;
        total += weight;
      }
      for (let s = 0; s <= t; s++) {
        const weight = (scores[s] ?? 0) / total;
        const vOffset = (h * length + s) * d;
        for (let i = 0; i < d; i++) {
          out[qOffset + i] = (out[qOffset + i] ?? 0) + weight * (v[vOffset + i] ?? 0);
        }
      }
    }
  }
  return outputProjection(config, weights, layer, mergeHeads(out, heads, length, d));
}

/** phi(x) = softmax(x @ P) over the last axis, for each row of `x` [rows, d], P [d, d]. */
function featureMap(x: Float64Array, d: number, projection: Float32Array): Float64Array {
  const out = new Float64Array(x.length);
  for (let row = 0; row < x.length / d; row++) {
    const offset = row * d;
    let max = -Infinity;
    for (let j = 0; j < d; j++) {
      let sum = 0;
      for (let i = 0; i < d; i++) sum += (x[offset + i] ?? 0) * (projection[i * d + j] ?? 0);
      out[offset + j] = sum;
      max = Math.max(max, sum);
    }
    let total = 0;
    for (let j = 0; j < d; j++) {
      const e = Math.exp((out[offset + j] ?? 0) - max);
      out[offset + j] = e;
      total += e;
    }
    for (let j = 0; j < d; j++) out[offset + j] = (out[offset + j] ?? 0) / total;
  }
  return out;
}

function dijiangAttention(
  config: ModelConfig,
  weights: Weights,
  layer: number,
  x: Float64Array,
): Float64Array {
  const hidden = config.hiddenSize;
  const d = headDim(config);
  const heads = config.numHeads;
  const length = x.length / hidden;
  const maxPos = config.maxPositionEmbeddings;
  const p = layerPrefix(layer);
  const table = [1, heads, maxPos, 1];
  const d1 = getTensor(weights, `${p}attention.D1`, table).data;
  const d2 = getTensor(weights, `${p}attention.D2`, table).data;
  const projection = getTensor(weights, `${p}attention.proj_matrix`, [d, d]).data;
  const { q, k, v } = projectHeads(config, weights, layer, x);
  const phiQ = featureMap(q, d, projection);
  const phiK = featureMap(k, d, projection);
  const out = new Float64Array(heads * length * d);
  const parallelLength = Math.min(length, maxPos);

  for (let h = 0; h < heads; h++) {
    const base = h * length;
    // The released parallel form: o_t = sum_{s<=t} D1[t] D2[s] (phi(q_t) . phi(k_s)) v_s.
    for (let t = 0; t < parallelLength; t++) {
      const qOffset = (base + t) * d;
      const query = phiQ.subarray(qOffset, qOffset + d);
      const d1t = d1[h * maxPos + t] ?? 0;
      for (let s = 0; s <= t; s++) {
        const weight = d1t * (d2[h * maxPos + s] ?? 0) * dot(query, phiK, (base + s) * d);
        const vOffset = (base + s) * d;
        for (let i = 0; i < d; i++) {
          out[qOffset + i] = (out[qOffset + i] ?? 0) + weight * (v[vOffset + i] ?? 0);
        }
      }
    }
    if (length <= maxPos) continue;

    // Past the tables: R_{M-1} from the parallel form, then R_t = r R_{t-1} + c phi(k_t)^T v_t.
    const lastD1 = d1[h * maxPos + maxPos - 1] ?? 0;
    const ratio = lastD1 / (d1[h * maxPos + maxPos - 2] ?? 0);
    const lastC = lastD1 * (d2[h * maxPos + maxPos - 1] ?? 0);
    const state = new Float64Array(d * d);
    for (let s = 0; s < maxPos; s++) {
      const scale = lastD1 * (d2[h * maxPos + s] ?? 0);
      addOuterProduct(state, phiK, v, (base + s) * d, d, scale);
    }
    for (let t = maxPos; t < length; t++) {
      for (let i = 0; i < state.length; i++) state[i] = (state[i] ?? 0) * ratio;
      const offset = (base + t) * d;
      addOuterProduct(state, phiK, v, offset, d, lastC);
      for (let j = 0; j < d; j++) {
        let sum = 0;
        for (let i = 0; i < d; i++) sum += (phiQ[offset + i] ?? 0) * (state[i * d + j] ?? 0);
        out[offset + j] = sum;
      }
    }
  }

  // GroupNorm(num_groups = d, channels = hidden) per token: groups of `heads` consecutive channels.
  const merged = mergeHeads(out, heads, length, d);
  const gamma = getTensor(weights, `${p}attention.group_norm.weight`, [hidden]).data;
  const beta = getTensor(weights, `${p}attention.group_norm.bias`, [hidden]).data;
  const groupSize = hidden / d;
  for (let offset = 0; offset < merged.length; offset += groupSize) {
    let mean = 0;
    for (let i = 0; i < groupSize; i++) mean += merged[offset + i] ?? 0;
    mean /= groupSize;
    let variance = 0;
    for (let i = 0; i < groupSize; i++) variance += ((merged[offset + i] ?? 0) - mean) ** 2;
    variance /= groupSize;
    const scale = 1 / Math.sqrt(variance + config.layerNormEps);
    for (let i = 0; i < groupSize; i++) {
      const channel = (offset + i) % hidden;
      merged[offset + i] =
        ((merged[offset + i] ?? 0) - mean) * scale * (gamma[channel] ?? 0) + (beta[channel] ?? 0);
    }
  }

  // Gate: silu(x @ W_G), W_G a raw [in, out] parameter (no transpose, no bias).
  const gateWeight = asFloat64(getTensor(weights, `${p}attention.W_G`, [hidden, hidden]).data);
  const gate = new Float64Array(hidden);
  for (let t = 0; t < length; t++) {
    const offset = t * hidden;
    gate.fill(0);
    for (let i = 0; i < hidden; i++) {
      const xi = x[offset + i] ?? 0;
      for (let o = 0; o < hidden; o++)
        gate[o] = (gate[o] ?? 0) + xi * (gateWeight[i * hidden + o] ?? 0);
    }
    for (let o = 0; o < hidden; o++) {
      const sum = gate[o] ?? 0;
      merged[offset + o] = ((merged[offset + o] ?? 0) * sum) / (1 + Math.exp(-sum));
    }
  }
  return outputProjection(config, weights, layer, merged);
}

/** state[i, j] += scale * a[offset + i] * b[offset + j]. */
function addOuterProduct(
  state: Float64Array,
  a: Float64Array,
  b: Float64Array,
  offset: number,
  d: number,
  scale: number,
): void {
  for (let i = 0; i < d; i++) {
    const ai = scale * (a[offset + i] ?? 0);
    for (let j = 0; j < d; j++)
      state[i * d + j] = (state[i * d + j] ?? 0) + ai * (b[offset + j] ?? 0);
  }
}
