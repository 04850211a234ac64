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
import type { ModelConfig } from './config.js';
import { getTensor, layerPrefix, type Weights } from './weights.js';
import { gelu, layerNorm, linear } from './oracle-math.js';
import { dijiangAttention, softmaxAttention } from './oracle-attention.js';

export { erf } from './oracle-math.js';

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
