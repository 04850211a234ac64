/**
 * The softmax baseline's attention: keys and values kept per absolute position, the new ones
 * scattered in at their positions, and each token attending to the positions up to its own.
 */
import {
  headsFirst,
  slice,
  split,
  toCompute,
  transpose,
  unsqueeze,
  type GraphContext,
} from '../graph-context.js';
import { ropeAndProject, ropeMatrix, type ChunkGeometry } from '../positions.js';
import { identityMatrix } from '../weight-layout.js';
import type { AttentionOutput, LayerStep } from './shared.js';

/** What every softmax layer reads: RoPE as a matrix and where the chunk goes in the cache. */
export interface SoftmaxGraphValues {
  /** [I; rotate_half] (or I without rotary dims): RoPE alone through {@link ropeAndProject}. */
  readonly ropeMatrix: string;
  /** Pads the cache's position axis by T for the new positions. */
  readonly kvPads: string;
  /** Key validity [B, 1, T, P + T]: key position <= query position. */
  readonly keyAllowed: string;
  /** Each new token's absolute position, [B, H, T, d], for the ScatterElements into the cache. */
  readonly scatterIndex: string;
}

export function softmaxGraphValues(
  ctx: GraphContext,
  geometry: ChunkGeometry,
  rope: string | undefined,
  pastKey: string,
): SoftmaxGraphValues {
  const { g } = ctx;
  const { batch, chunk, positions } = geometry;
  const rotation = ropeMatrix(ctx, rope, 'attention.rope_matrix', identityMatrix(ctx.headDim));
  const kvPads = g.op('Concat', [g.int64([0, 0, 0, 0, 0, 0]), chunk, g.int64([0])], { axis: 0 });
  const keyLength = g.op('Add', [slice(g, g.op('Shape', [pastKey]), 3, 4, 0), chunk]);
  const keyIndex = g.op('Range', [
    g.int64([0], []),
    g.op('Squeeze', [keyLength, g.int64([0])]),
    g.int64([1], []),
  ]);
  const keyAllowed = unsqueeze(
    g,
    g.op('LessOrEqual', [keyIndex, unsqueeze(g, positions, [2])]),
    [1],
  );
  const scatterIndex = g.op('Expand', [
    unsqueeze(g, positions, [1, 3]),
    g.op('Concat', [batch, g.int64([ctx.heads]), chunk, g.int64([ctx.headDim])], { axis: 0 }),
  ]);
  return { ropeMatrix: rotation, kvPads, keyAllowed, scatterIndex };
}

/** The past keys and values of every layer, [layers, B, H, P, d]. */
export interface PastKeyValues {
  readonly pastKey: string;
  readonly pastValue: string;
}

/** A layer's keys and values after the chunk, each [1, B, H, P + T, d]. */
export interface PresentKeyValue {
  readonly key: string;
  readonly value: string;
}

/** A layer's past `[B, H, P, d]` padded by T positions, with `fresh` scattered in at theirs. */
function withNew(
  ctx: GraphContext,
  perGraph: SoftmaxGraphValues,
  layerIndex: string,
  past: string,
  fresh: string,
): string {
  const { g } = ctx;
  return g.op(
    'ScatterElements',
    [
      g.op('Pad', [
        toCompute(ctx, g.op('Gather', [past, layerIndex], { axis: 0 })),
        perGraph.kvPads,
      ]),
      perGraph.scatterIndex,
      fresh,
    ],
    { axis: 2 },
  );
}

export function softmaxAttention(
  ctx: GraphContext,
  perGraph: SoftmaxGraphValues,
  rope: string | undefined,
  geometry: ChunkGeometry,
  past: PastKeyValues,
  step: LayerStep,
): AttentionOutput<PresentKeyValue> {
  const { g, heads, headDim: d, hidden, computeType } = ctx;
  const { layerIndex, projections } = step;
  const [q, k] = split(
    g,
    headsFirst(g, ropeAndProject(ctx, rope, projections.qk, perGraph.ropeMatrix), geometry.qkShape),
    [heads, heads],
    1,
  );
  if (q === undefined || k === undefined) throw new Error('Split lost an output');
  const keys = withNew(ctx, perGraph, layerIndex, past.pastKey, k);
  const values = withNew(ctx, perGraph, layerIndex, past.pastValue, projections.v);
  const key = unsqueeze(g, keys, [0]);
  const value = unsqueeze(g, values, [0]);
  const scores = g.op('Mul', [
    g.op('MatMul', [q, transpose(g, keys, [0, 1, 3, 2])]),
    g.scalar(1 / Math.sqrt(d), computeType),
  ]);
  const masked = g.op('Where', [perGraph.keyAllowed, scores, g.scalar(-Infinity, computeType)]);
  const attentionHeads = g.op('MatMul', [g.op('Softmax', [masked], { axis: -1 }), values]);
  const attention = g.op('Reshape', [
    transpose(g, attentionHeads, [0, 2, 1, 3]),
    g.int64([-1, hidden]),
  ]);
  return { attention, carry: { key, value } };
}
