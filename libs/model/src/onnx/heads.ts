/**
 * The ends of the model graph: the token embedding in, and out the final norm with the LM head
 * (last logits, their log-normaliser, scored targets' log-probs) and the carried state.
 */
import { param, slice, tensor, toFloat32, type GraphContext } from './graph-context.js';
import { GraphOutput, stateDims, type GraphInputs } from './graph-io.js';
import type { ChunkGeometry } from './positions.js';
import { TensorDataType } from './proto.js';
import {
  gatherRows,
  multiplyTransposed,
  storeMatrix,
  type MatrixUse,
  type StoredMatrix,
} from './stored-weights.js';

/** A [vocab, hidden] checkpoint matrix (embedding or LM head) in the graph's weight precision. */
function vocabMatrix(ctx: GraphContext, name: string, use: MatrixUse): StoredMatrix {
  const { vocabSize } = ctx.config;
  const values = tensor(ctx, name, [vocabSize, ctx.hidden]);
  return storeMatrix(ctx, name, values, vocabSize, ctx.hidden, use);
}

/** The embeddings of all B*T tokens, [B*T, hidden]. */
export function embed(ctx: GraphContext, ids: string): string {
  const { g } = ctx;
  return gatherRows(
    ctx,
    vocabMatrix(ctx, 'gpt_neox.embed_in.weight', 'gather'),
    g.op('Reshape', [ids, g.int64([-1])]),
  );
}

/** Final LayerNorm, then logits at each row's last valid position and the scored log-probs. */
export function emitLanguageModelHead(
  ctx: GraphContext,
  geometry: ChunkGeometry,
  inputs: GraphInputs,
  h: string,
): void {
  const { g, hidden } = ctx;
  const prefix = 'gpt_neox.final_layer_norm';
  const finalHidden = g.op(
    'LayerNormalization',
    [h, param(ctx, `${prefix}.weight`, [hidden]), param(ctx, `${prefix}.bias`, [hidden])],
    { axis: -1, epsilon: ctx.eps },
  );
  const embedOut = vocabMatrix(ctx, 'embed_out.weight', 'multiply');
  emitLastLogits(ctx, geometry, inputs.validLen, finalHidden, embedOut);
  emitTargetLogprobs(ctx, geometry, inputs.targets, finalHidden, embedOut);
}

function emitLastLogits(
  ctx: GraphContext,
  geometry: ChunkGeometry,
  validLen: string,
  finalHidden: string,
  embedOut: StoredMatrix,
): void {
  const { g } = ctx;
  // Each row's last valid position in the flattened [B * T] rows (a row with valid_len 0 reads its first).
  const lastRow = g.op('Add', [
    g.op('Mul', [
      g.op('Range', [g.int64([0], []), geometry.batchScalar, g.int64([1], [])]),
      geometry.chunkScalar,
    ]),
    g.op('Max', [g.op('Sub', [validLen, g.int64([1], [])]), g.int64([0], [])]),
  ]);
  const logits = multiplyTransposed(
    ctx,
    g.op('Gather', [finalHidden, lastRow], { axis: 0 }),
    embedOut,
  );
  const logits32 = toFloat32(ctx, logits);
  g.output(GraphOutput.Logits, logits32, TensorDataType.Float, ['batch', ctx.config.vocabSize]);
  // max + log(sum(exp(logits - max))): stable however large the logits. The sum is a product
  // with a column of ones: a row's sum then comes out the same bits wherever the row sits in the
  // batch (ReduceSum's vectorized loop splits a row by its memory alignment, which moves with
  // the row's index when the vocabulary is not a multiple of the vector width).
  const rowMax = g.op('ReduceMax', [logits32, g.int64([1])], { keepdims: 1 });
  const ones = g.floatInitializer(
    'logits_row_sum_ones',
    [ctx.config.vocabSize, 1],
    new Float32Array(ctx.config.vocabSize).fill(1),
    TensorDataType.Float,
  );
  const logNormaliser = g.op('Add', [
    rowMax,
    g.op('Log', [g.op('MatMul', [g.op('Exp', [g.op('Sub', [logits32, rowMax])]), ones])]),
  ]);
  g.output(
    GraphOutput.LogitsLogNormaliser,
    g.op('Squeeze', [logNormaliser, g.int64([1])]),
    TensorDataType.Float,
    ['batch'],
  );
}

function emitTargetLogprobs(
  ctx: GraphContext,
  geometry: ChunkGeometry,
  targets: string,
  finalHidden: string,
  embedOut: StoredMatrix,
): void {
  const { g, hidden } = ctx;
  // Scoring: only the first S positions of each row, so S = 0 costs nothing.
  const scored = slice(g, g.op('Shape', [targets]), 1, 2, 0);
  const scoredHidden = g.op('Reshape', [
    g.op('Slice', [
      g.op('Reshape', [
        finalHidden,
        g.op('Concat', [geometry.batch, geometry.chunk, g.int64([hidden])], { axis: 0 }),
      ]),
      g.int64([0]),
      scored,
      g.int64([1]),
    ]),
    g.int64([-1, hidden]),
  ]);
  const logProbs = g.op(
    'LogSoftmax',
    [toFloat32(ctx, multiplyTransposed(ctx, scoredHidden, embedOut))],
    { axis: -1 },
  );
  const targetLogProbs = g.op(
    'Reshape',
    [
      g.op('GatherElements', [logProbs, g.op('Reshape', [targets, g.int64([-1, 1])])], { axis: 1 }),
      g.op('Shape', [targets]),
    ],
    { allowzero: 1 },
  );
  g.output(GraphOutput.TargetLogprobs, targetLogProbs, TensorDataType.Float, ['batch', 'scored']);
}

/** DiJiang's state after the chunk, from each layer's [1, B, H, d, d] state. */
export function emitStateOutput(ctx: GraphContext, stateByLayer: readonly string[]): void {
  ctx.g.output(
    GraphOutput.State,
    toFloat32(ctx, ctx.g.op('Concat', [...stateByLayer], { axis: 0 })),
    TensorDataType.Float,
    stateDims(ctx),
  );
}

/** Each layer's [1, B, H, P + T, d] keys and values, as softmax's cache after the chunk. */
export function emitKvCacheOutputs(
  ctx: GraphContext,
  keysByLayer: readonly string[],
  valuesByLayer: readonly string[],
): void {
  const presentShape = [ctx.layers, 'batch', ctx.heads, 'present', ctx.headDim];
  ctx.g.output(
    GraphOutput.PresentKey,
    toFloat32(ctx, ctx.g.op('Concat', [...keysByLayer], { axis: 0 })),
    TensorDataType.Float,
    presentShape,
  );
  ctx.g.output(
    GraphOutput.PresentValue,
    toFloat32(ctx, ctx.g.op('Concat', [...valuesByLayer], { axis: 0 })),
    TensorDataType.Float,
    presentShape,
  );
}
