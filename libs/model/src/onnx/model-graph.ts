/**
 * The ONNX graph of a model: one chunk of T positions for a batch of B rows (T = 1 is a decode
 * step). DiJiang layers use the chunked form of DIJIANG.md §3: the masked intra-chunk matrix plus
 * the carried state, with log r_t and c_t gathered by absolute position (positions past the tables
 * clamp to the last entry: the extension of §4). The softmax baseline keeps K and V per absolute
 * position. Large matmuls run on all B*T rows at once.
 *
 * Inputs: `input_ids` int64 [B, T] (right padded), `start_pos` int64 [B] (the absolute position of
 * each row's first token; for softmax also its number of cached positions), `valid_len` int64 [B],
 * `target_ids` int64 [B, S] with S = T to score targets or S = 0 to skip scoring, and the state:
 * `state` float32 [layers, B, H, d, d] (DiJiang) or `past_key` / `past_value` float32
 * [layers, B, H, P, d] (softmax; row b's entries at positions >= start_pos[b] are ignored).
 * Outputs: `logits` float32 [B, V] at each row's last valid position, `target_logprobs` float32
 * [B, S] (log-prob of target_ids[b, t] after the tokens up to t; meaningful for t < valid_len[b]),
 * and `state_out` or `present_key` / `present_value` [layers, B, H, P + T, d].
 * Padding never enters a state: padded positions get log r = 0 and c = 0 (DiJiang) and are
 * never attended to (softmax).
 */
import { stageCounter, type BuildProgress } from '../build-progress.js';
import type { ModelConfig } from '../config.js';
import type { WeightPrecision } from '../quantize.js';
import type { Weights } from '../weights.js';
import { dijiangAttention, dijiangGraphValues } from './blocks/dijiang.js';
import {
  blockOutput,
  fusedInput,
  unitNorm,
  type AttentionOutput,
  type LayerStep,
  type UnitNorm,
} from './blocks/shared.js';
import { softmaxAttention, softmaxGraphValues } from './blocks/softmax.js';
import type { GraphBuilder } from './graph-builder.js';
import { createGraphContext, type GraphContext, type Precision } from './graph-context.js';
import { declareInputs } from './graph-io.js';
import { embed, emitKvCacheOutputs, emitLanguageModelHead, emitStateOutput } from './heads.js';
import { chunkGeometry, ropeFactors } from './positions.js';

export type { Precision } from './graph-context.js';
export { GraphInput, GraphOutput } from './graph-io.js';

/**
 * Graph layout (chosen for CPU speed; the computed function is DIJIANG.md's):
 * - One unit-affine LayerNorm per block; both norms' affines are folded into a single input Gemm
 *   that yields [q | k | v | (DiJiang: gate) | MLP up] for all heads (q and k head-major so that
 *   both go through RoPE and the feature map as one [B*T, 2H, d] tensor).
 * - RoPE and the feature projection are one MatMul: `[x cos, x sin] @ [P; rotate_half P]`
 *   (softmax: `[I; rotate_half]`), with cos = 1 and sin = 0 past the rotary dims.
 * - The attention output and the MLP output share one output Gemm over [gated | gelu].
 * - DiJiang's decay factors for all layers come from one table lookup and one float64 CumSum per
 *   graph; each layer picks its slice with a Gather. Only the [T, T] intra-chunk decay is formed
 *   per layer (from float64 differences A_t - A_s), so a decode step (T = 1) does no per-head work
 *   beyond a few [d, d] products.
 *
 * `onProgress` hears of the large matrices' values as they are stored (out of
 * {@link storedMatrixValues}): stage `quantize` when a float32 graph stores int8 or int4 weights,
 * which is then most of the work, `graph` otherwise.
 */
export function buildModelGraph(
  config: ModelConfig,
  weights: Weights,
  precision: Precision = 'fp32',
  weightPrecision: WeightPrecision = 'fp32',
  onProgress?: BuildProgress,
): GraphBuilder {
  const quantizing =
    precision === 'fp32' && (weightPrecision === 'int8' || weightPrecision === 'int4');
  const stored = stageCounter(
    quantizing ? 'quantize' : 'graph',
    storedMatrixValues(config),
    onProgress,
  );
  const ctx = createGraphContext(config, weights, precision, weightPrecision, stored);
  const norm = unitNorm(ctx);
  const inputs = declareInputs(ctx);
  const geometry = chunkGeometry(ctx, inputs.ids, inputs.startPos);
  const rope = ropeFactors(ctx, geometry.positions);
  const cache = inputs.cache;
  switch (cache.kind) {
    case 'dijiang': {
      const perGraph = dijiangGraphValues(ctx, geometry, inputs.validLen, cache.state);
      const embedded = embed(ctx, inputs.ids);
      const { h, carried } = stackLayers(ctx, norm, geometry.vShape, embedded, (step) =>
        dijiangAttention(ctx, perGraph, rope, geometry, step),
      );
      emitLanguageModelHead(ctx, geometry, inputs, h);
      emitStateOutput(ctx, carried);
      break;
    }
    case 'softmax': {
      const perGraph = softmaxGraphValues(ctx, geometry, rope, cache.pastKey);
      const embedded = embed(ctx, inputs.ids);
      const { h, carried } = stackLayers(ctx, norm, geometry.vShape, embedded, (step) =>
        softmaxAttention(ctx, perGraph, rope, geometry, cache, step),
      );
      emitLanguageModelHead(ctx, geometry, inputs, h);
      emitKvCacheOutputs(
        ctx,
        carried.map((present) => present.key),
        carried.map((present) => present.value),
      );
      break;
    }
  }
  return ctx.g;
}

/**
 * The values of the large matrices the graph stores: the token embedding and the LM head
 * ([vocab, hidden] each) and per layer the fused input ([q | k | v | (DiJiang: gate) | MLP up]
 * rows by hidden) and the fused output (hidden by [hidden | ffn]).
 */
export function storedMatrixValues(config: ModelConfig): number {
  const { vocabSize, hiddenSize: hidden, intermediateSize: ffn, numLayers } = config;
  const fusedInputRows = (config.attention === 'dijiang' ? 4 : 3) * hidden + ffn;
  return 2 * vocabSize * hidden + numLayers * (fusedInputRows * hidden + hidden * (hidden + ffn));
}

/**
 * The layers in order, from the embeddings: each block's shared input and output Gemms around the
 * attention of its kind. Returns the last hidden state and each layer's carried values.
 */
function stackLayers<Carry>(
  ctx: GraphContext,
  norm: UnitNorm,
  vShape: string,
  embedded: string,
  attend: (step: LayerStep) => AttentionOutput<Carry>,
): { h: string; carried: Carry[] } {
  let h = embedded;
  const carried: Carry[] = [];
  for (let layer = 0; layer < ctx.layers; layer++) {
    const layerIndex = ctx.g.int64([layer], []);
    const projections = fusedInput(ctx, norm, vShape, h, layer);
    const { attention, carry } = attend({ layer, layerIndex, projections });
    carried.push(carry);
    h = blockOutput(ctx, h, attention, projections.up, layer);
  }
  return { h, carried };
}
