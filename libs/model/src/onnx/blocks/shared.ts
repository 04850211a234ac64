/**
 * The parts of a layer that both attention kinds share: the normalisation, the fused input Gemm
 * (QKV, DiJiang's gate and the MLP's up projection, with both LayerNorms' affines folded in), and
 * the fused output Gemm (attention.dense and the MLP's down projection) with the residual.
 */
import { layerPrefix } from '../../weights.js';
import { constant, headsFirst, pick, split, tensor, type GraphContext } from '../graph-context.js';
import { multiplyTransposed, storeMatrix } from '../stored-weights.js';
import {
  foldNormAffine,
  fuseOutputProjection,
  gateAsLinear,
  regroupQkv,
  stackRows,
  type LinearWeights,
} from '../weight-layout.js';

/** The unit-affine LayerNorm every block shares: scale 1 and bias 0 over [hidden]. */
export interface UnitNorm {
  readonly scale: string;
  readonly bias: string;
}

export function unitNorm(ctx: GraphContext): UnitNorm {
  return {
    scale: constant(ctx, 'norm.unit_scale', [ctx.hidden], new Float32Array(ctx.hidden).fill(1)),
    bias: constant(ctx, 'norm.zero_bias', [ctx.hidden], new Float32Array(ctx.hidden)),
  };
}

/** One layer's outputs of the fused input Gemm. */
export interface LayerProjections {
  /** q and k of all heads, head-major, [B*T, 2 * hidden]. */
  readonly qk: string;
  /** v of all heads, [B, H, T, d]. */
  readonly v: string;
  /** DiJiang's gate pre-activation x @ W_G, [B*T, hidden]; undefined for softmax. */
  readonly gate: string | undefined;
  /** The MLP's up projection before GELU, [B*T, ffn]. */
  readonly up: string;
}

/** A layer's index (an int64 scalar, for Gathers of per-layer values) and its projections. */
export interface LayerStep {
  readonly layer: number;
  readonly layerIndex: string;
  readonly projections: LayerProjections;
}

/** One layer's attention: the attention half of the fused output Gemm's input, and what it carries on. */
export interface AttentionOutput<Carry> {
  /** [B*T, hidden] */
  readonly attention: string;
  /** What the next chunk reads back: DiJiang's state, softmax's keys and values. */
  readonly carry: Carry;
}

function linearWeights(
  ctx: GraphContext,
  prefix: string,
  rows: number,
  inFeatures: number,
): LinearWeights {
  return {
    weight: tensor(ctx, `${prefix}.weight`, [rows, inFeatures]),
    bias: tensor(ctx, `${prefix}.bias`, [rows]),
    rows,
  };
}

/** [q | k | v | (DiJiang: gate) | MLP up] of one layer, each with its LayerNorm's affine folded in. */
function fusedInputWeights(ctx: GraphContext, layer: number): LinearWeights {
  const { hidden, ffn } = ctx;
  const p = layerPrefix(layer);
  const ln1Weight = tensor(ctx, `${p}input_layernorm.weight`, [hidden]);
  const ln1Bias = tensor(ctx, `${p}input_layernorm.bias`, [hidden]);
  const qkv = regroupQkv(
    linearWeights(ctx, `${p}attention.query_key_value`, 3 * hidden, hidden),
    ctx.heads,
    ctx.headDim,
    hidden,
  );
  const attentionParts: LinearWeights[] = [qkv.query, qkv.key, qkv.value];
  if (ctx.config.attention === 'dijiang') {
    attentionParts.push(gateAsLinear(tensor(ctx, `${p}attention.W_G`, [hidden, hidden]), hidden));
  }
  return stackRows(
    [
      ...attentionParts.map((part) => foldNormAffine(part, ln1Weight, ln1Bias)),
      foldNormAffine(
        linearWeights(ctx, `${p}mlp.dense_h_to_4h`, ffn, hidden),
        tensor(ctx, `${p}post_attention_layernorm.weight`, [hidden]),
        tensor(ctx, `${p}post_attention_layernorm.bias`, [hidden]),
      ),
    ],
    hidden,
  );
}

/** The block's input: one unit LayerNorm of h, then one Gemm for every Linear layer reading it. */
export function fusedInput(
  ctx: GraphContext,
  norm: UnitNorm,
  vShape: string,
  h: string,
  layer: number,
): LayerProjections {
  const { g, hidden } = ctx;
  const p = layerPrefix(layer);
  const fused = fusedInputWeights(ctx, layer);
  const projected = multiplyTransposed(
    ctx,
    g.op('LayerNormalization', [h, norm.scale, norm.bias], { axis: -1, epsilon: ctx.eps }),
    storeMatrix(ctx, `${p}fused_input.weight`, fused.weight, fused.rows, hidden, 'multiply'),
    constant(ctx, `${p}fused_input.bias`, [fused.rows], fused.bias),
  );
  const gated = ctx.config.attention === 'dijiang';
  const projections = split(
    g,
    projected,
    gated ? [2 * hidden, hidden, hidden, ctx.ffn] : [2 * hidden, hidden, ctx.ffn],
    1,
  );
  return {
    qk: pick(projections, 0),
    v: headsFirst(g, pick(projections, 1), vShape),
    gate: gated ? pick(projections, 2) : undefined,
    up: pick(projections, projections.length - 1),
  };
}

/**
 * attention.dense and mlp.dense_4h_to_h as one Gemm over [attention input | gelu(up)], added to
 * the residual stream h (GPT-NeoX's parallel residual).
 */
export function blockOutput(
  ctx: GraphContext,
  h: string,
  attentionInput: string,
  up: string,
  layer: number,
): string {
  const { g, hidden, ffn } = ctx;
  const p = layerPrefix(layer);
  const fused = fuseOutputProjection(
    linearWeights(ctx, `${p}attention.dense`, hidden, hidden),
    linearWeights(ctx, `${p}mlp.dense_4h_to_h`, hidden, ffn),
    hidden,
    ffn,
  );
  const blockOut = multiplyTransposed(
    ctx,
    g.op('Concat', [attentionInput, g.op('Gelu', [up])], { axis: 1 }),
    storeMatrix(ctx, `${p}fused_output.weight`, fused.weight, hidden, hidden + ffn, 'multiply'),
    constant(ctx, `${p}fused_output.bias`, [hidden], fused.bias),
  );
  return g.op('Add', [h, blockOut]);
}
