/**
 * What every part of the model graph is emitted with: the builder (the only mutable state), the
 * model's config, weights and dimensions, and small helpers over ONNX ops that the parts share.
 */
import { headDim, rotaryDims, type ModelConfig } from '../config.js';
import type { WeightPrecision } from '../quantize.js';
import { getTensor, type Weights } from '../weights.js';
import { float, GraphBuilder } from './graph-builder.js';
import { TensorDataType } from './proto.js';

export type Precision = 'fp32' | 'fp16';

/** The floating type weights are stored in and activations computed in. */
export type ComputeType = typeof TensorDataType.Float | typeof TensorDataType.Float16;

export interface GraphContext {
  readonly g: GraphBuilder;
  readonly config: ModelConfig;
  readonly weights: Weights;
  readonly precision: Precision;
  readonly computeType: ComputeType;
  /**
   * How the large matrices (embedding, fused Gemms, LM head) are stored in a float32 graph; an
   * fp16 graph stores everything in fp16 and ignores it.
   */
  readonly weightPrecision: WeightPrecision;
  readonly hidden: number;
  readonly heads: number;
  /** d: the size of each head. */
  readonly headDim: number;
  /** r: the leading dims of each head that RoPE rotates. */
  readonly rotary: number;
  readonly layers: number;
  /** The MLP's inner size. */
  readonly ffn: number;
  /** The epsilon of every normalisation, as a float attribute. */
  readonly eps: { readonly float: number };
  /** Told of each large matrix's values as they are stored (see stored-weights.ts). */
  readonly stored: (values: number) => void;
}

export function createGraphContext(
  config: ModelConfig,
  weights: Weights,
  precision: Precision,
  weightPrecision: WeightPrecision = 'fp32',
  stored: (values: number) => void = () => undefined,
): GraphContext {
  return {
    g: new GraphBuilder(),
    config,
    weights,
    precision,
    computeType: precision === 'fp32' ? TensorDataType.Float : TensorDataType.Float16,
    weightPrecision,
    hidden: config.hiddenSize,
    heads: config.numHeads,
    headDim: headDim(config),
    rotary: rotaryDims(config),
    layers: config.numLayers,
    ffn: config.intermediateSize,
    eps: float(config.layerNormEps),
    stored,
  };
}

/** Slice end meaning "to the end of the axis". */
export const TO_END = Number.MAX_SAFE_INTEGER;

/** A checkpoint tensor's values, checked against the expected shape. */
export function tensor(ctx: GraphContext, name: string, shape: readonly number[]): Float32Array {
  return getTensor(ctx.weights, name, shape).data;
}

/** A checkpoint tensor as an initializer of the same name, in the compute type. */
export function param(ctx: GraphContext, name: string, shape: readonly number[]): string {
  return ctx.g.floatInitializer(name, shape, tensor(ctx, name, shape), ctx.computeType);
}

/** Values computed here as an initializer, in the compute type. */
export function constant(
  ctx: GraphContext,
  name: string,
  shape: readonly number[],
  values: Float32Array,
): string {
  return ctx.g.floatInitializer(name, shape, values, ctx.computeType);
}

/** A float32 value (a graph input) in the compute type. */
export function toCompute(ctx: GraphContext, value: string): string {
  return ctx.precision === 'fp32' ? value : ctx.g.op('Cast', [value], { to: ctx.computeType });
}

/** A compute-type value as float32 (for a graph output). */
export function toFloat32(ctx: GraphContext, value: string): string {
  return ctx.precision === 'fp32' ? value : ctx.g.op('Cast', [value], { to: TensorDataType.Float });
}

/** A float64 value in the compute type. */
export function fromDouble(ctx: GraphContext, value: string): string {
  return ctx.g.op('Cast', [value], { to: ctx.computeType });
}

export function unsqueeze(g: GraphBuilder, value: string, axes: number[]): string {
  return g.op('Unsqueeze', [value, g.int64(axes)]);
}

export function transpose(g: GraphBuilder, value: string, perm: number[]): string {
  return g.op('Transpose', [value], { perm });
}

export function slice(
  g: GraphBuilder,
  value: string,
  start: number,
  end: number,
  axis: number,
): string {
  return g.op('Slice', [value, g.int64([start]), g.int64([end]), g.int64([axis])]);
}

export function reshape(g: GraphBuilder, value: string, shape: string): string {
  return g.op('Reshape', [value, shape]);
}

export function split(g: GraphBuilder, value: string, sizes: number[], axis: number): string[] {
  const parts = g.ops('Split', [value, g.int64(sizes)], { axis }, sizes.length);
  if (parts.length !== sizes.length) throw new Error('Split lost an output');
  return parts;
}

export function pick(values: readonly string[], index: number): string {
  const value = values[index];
  if (value === undefined) throw new Error(`no value ${index} among ${values.length}`);
  return value;
}

/** [B*T, count, d] -> [B, count, T, d] (`shape` is [B, T, count, d]). */
export function headsFirst(g: GraphBuilder, x: string, shape: string): string {
  return transpose(g, reshape(g, x, shape), [0, 2, 1, 3]);
}
