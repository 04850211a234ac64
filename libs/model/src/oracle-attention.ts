/**
 * The reference model's attention (oracle.ts): softmax attention, and DiJiang attention in the
 * released code's parallel form continued recurrently past the decay tables (DIJIANG.md §4).
 */
import { headDim, rotaryDims, type ModelConfig } from './config.js';
import { asFloat64, dot, linear } from './oracle-math.js';
import { getTensor, layerPrefix, type Weights } from './weights.js';

interface HeadProjections {
  /** [numHeads, length, d] after RoPE. */
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
}

/** QKV projection, split per head (interleaved [H, 3d] layout), RoPE on the first r dims. */
export function projectHeads(
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
export function mergeHeads(
  values: Float64Array,
  heads: number,
  length: number,
  d: number,
): Float64Array {
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

export function outputProjection(
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

export function softmaxAttention(
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

export function dijiangAttention(
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
