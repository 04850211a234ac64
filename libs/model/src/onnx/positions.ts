/**
 * What depends on token positions, computed once per graph: the chunk's geometry and absolute
 * positions, the RoPE factors, and DiJiang's decay factors for all layers.
 */
import { decayTables } from '../decay.js';
import type { GraphBuilder } from './graph-builder.js';
import {
  constant,
  fromDouble,
  reshape,
  slice,
  TO_END,
  transpose,
  unsqueeze,
  type GraphContext,
} from './graph-context.js';
import { TensorDataType } from './proto.js';
import { positionMajorDecay, ropeThen } from './weight-layout.js';

/** Batch geometry: B and T as 1-element tensors and as scalars, tIndex [T], positions [B, T]. */
export interface ChunkGeometry {
  readonly batch: string;
  readonly chunk: string;
  readonly batchScalar: string;
  readonly chunkScalar: string;
  readonly tIndex: string;
  /** Absolute position of each token: start_pos[b] + t. */
  readonly positions: string;
  /** [B, T, 2H, d]: q and k of all heads. */
  readonly qkShape: string;
  /** [B, T, H, d]: v of all heads. */
  readonly vShape: string;
}

export function chunkGeometry(ctx: GraphContext, ids: string, startPos: string): ChunkGeometry {
  const { g } = ctx;
  const idsShape = g.op('Shape', [ids]);
  const batch = slice(g, idsShape, 0, 1, 0);
  const chunk = slice(g, idsShape, 1, 2, 0);
  const chunkScalar = g.op('Squeeze', [chunk, g.int64([0])]);
  const batchScalar = g.op('Squeeze', [batch, g.int64([0])]);
  const tIndex = g.op('Range', [g.int64([0], []), chunkScalar, g.int64([1], [])]);
  const positions = g.op('Add', [unsqueeze(g, startPos, [1]), tIndex]);
  const perHeadShape = (count: number): string =>
    g.op('Concat', [batch, chunk, g.int64([count, ctx.headDim])], { axis: 0 });
  const qkShape = perHeadShape(2 * ctx.heads);
  const vShape = perHeadShape(ctx.heads);
  return { batch, chunk, batchScalar, chunkScalar, tIndex, positions, qkShape, vShape };
}

/**
 * RoPE factors [B*T, 1, 2, d]: cos and sin per dim (cos 1, sin 0 past the rotary dims), or
 * undefined when no dim rotates. Angles in float64: float32 loses ~1e-3 rad at positions ~64k.
 */
export function ropeFactors(ctx: GraphContext, positions: string): string | undefined {
  const { g, rotary, headDim: d } = ctx;
  if (rotary === 0) return undefined;
  const frequencies = new Float64Array(d);
  for (let i = 0; i < rotary / 2; i++) {
    const frequency = ctx.config.rotaryBase ** (-(2 * i) / rotary);
    frequencies[i] = frequency;
    frequencies[i + rotary / 2] = frequency;
  }
  const angles = g.op('Mul', [
    g.op('Cast', [g.op('Reshape', [positions, g.int64([-1, 1])])], { to: TensorDataType.Double }),
    g.initializer('rope.frequencies', TensorDataType.Double, [d], frequencies),
  ]);
  return unsqueeze(
    g,
    fromDouble(
      ctx,
      g.op(
        'Concat',
        [unsqueeze(g, g.op('Cos', [angles]), [1]), unsqueeze(g, g.op('Sin', [angles]), [1])],
        { axis: 1 },
      ),
    ),
    [1],
  );
}

/** The constant {@link ropeAndProject} multiplies by: [2d, d] with RoPE, [d, d] without. */
export function ropeMatrix(
  ctx: GraphContext,
  rope: string | undefined,
  name: string,
  matrix: Float32Array,
): string {
  const d = ctx.headDim;
  return rope === undefined
    ? constant(ctx, name, [d, d], matrix)
    : constant(ctx, name, [2 * d, d], ropeThen(matrix, d, ctx.rotary));
}

/** q and k of all heads [B*T, 2h] -> rope(x) @ M per head, [B*T, 2H, d] (M from ropeMatrix). */
export function ropeAndProject(
  ctx: GraphContext,
  rope: string | undefined,
  qk: string,
  matrix: string,
): string {
  const { g, heads, headDim: d } = ctx;
  if (rope === undefined)
    return g.op('MatMul', [g.op('Reshape', [qk, g.int64([-1, 2 * heads, d])]), matrix]);
  const scaled = g.op('Mul', [g.op('Reshape', [qk, g.int64([-1, 2 * heads, 1, d])]), rope]);
  return g.op('MatMul', [g.op('Reshape', [scaled, g.int64([-1, 2 * heads, 2 * d])]), matrix]);
}

/** DiJiang's decay factors of all layers, each [L, B, H, T, ...]; a layer picks its slice by Gather. */
export interface DecayFactors {
  /** A_t = sum_{u=p..t} log r_u, float64 [L, B, H, T, 1]. */
  readonly cumulativeByLayer: string;
  /** Per position, [L, B, H, T, 3]: query scale exp(A_t), key scale exp(A_last - A_s) c_s, value scale c_s. */
  readonly factorsByLayer: string;
  /** exp(A_last) [L, B, H, 1, 1]: how much of the carried state survives the chunk. */
  readonly stateDecayByLayer: string;
}

/** Where each token reads the tables, and whether it is a real token (not padding). */
interface TableLookup {
  readonly tableIndex: string;
  readonly valid: string;
}

/** Gathers a [positions, L*H] table at each token's table index; padding reads `zero`. */
function lookupByPosition(g: GraphBuilder, at: TableLookup, table: string, zero: string): string {
  return g.op('Where', [at.valid, g.op('Gather', [table, at.tableIndex], { axis: 0 }), zero]);
}

/** [B, T, L*H] -> [L, B, H, T, 1] */
function layerMajor(ctx: GraphContext, x: string): string {
  const { g } = ctx;
  return unsqueeze(
    g,
    transpose(g, reshape(g, x, g.int64([0, 0, ctx.layers, ctx.heads])), [2, 0, 3, 1]),
    [4],
  );
}

/**
 * DiJiang decay factors for all layers (DIJIANG.md §3), from log r_t and c_t looked up by the
 * clamped absolute position (the §4 extension) and zeroed on padding. A_t = sum_{u=p..t} log r_u
 * stays float64 so that A_t - A_s keeps its precision; every factor is exp of a value <= 0.
 * Constant decay needs no form of its own: its short tables clamp to the last (equal) entry.
 */
export function decayFactors(
  ctx: GraphContext,
  geometry: ChunkGeometry,
  validLen: string,
): DecayFactors {
  const { g, config } = ctx;
  const maxPos = config.maxPositionEmbeddings;
  const layerHeads = ctx.layers * ctx.heads;
  const tables = positionMajorDecay(
    decayTables(config, ctx.weights),
    ctx.layers,
    ctx.heads,
    maxPos,
  );
  const at: TableLookup = {
    tableIndex: g.op('Min', [geometry.positions, g.int64([maxPos - 1], [])]),
    valid: unsqueeze(g, g.op('Less', [geometry.tIndex, unsqueeze(g, validLen, [1])]), [2]),
  };
  const logRatios = lookupByPosition(
    g,
    at,
    g.initializer('attention.log_r', TensorDataType.Double, [maxPos, layerHeads], tables.logRatio),
    g.scalar(0, TensorDataType.Double),
  );
  const coefficients = lookupByPosition(
    g,
    at,
    constant(ctx, 'attention.c', [maxPos, layerHeads], tables.coefficient),
    g.scalar(0, ctx.computeType),
  );
  const cumulative = g.op('CumSum', [logRatios, g.int64([1], [])]);
  const lastCumulative = slice(g, cumulative, -1, TO_END, 1);
  const decayExp = (value: string): string => fromDouble(ctx, g.op('Exp', [value]));
  const cumulativeByLayer = layerMajor(ctx, cumulative);
  const factorsByLayer = g.op(
    'Concat',
    [
      layerMajor(ctx, decayExp(cumulative)),
      layerMajor(
        ctx,
        g.op('Mul', [decayExp(g.op('Sub', [lastCumulative, cumulative])), coefficients]),
      ),
      layerMajor(ctx, coefficients),
    ],
    { axis: 4 },
  );
  const stateDecayByLayer = layerMajor(ctx, decayExp(lastCumulative));
  return { cumulativeByLayer, factorsByLayer, stateDecayByLayer };
}
