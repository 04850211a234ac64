/**
 * The model's large matrices (token embedding, each layer's fused input and output Gemms, the LM
 * head) as the graph's weight precision stores them, and the ops that read them:
 * - float32 and all-fp16 graphs: initializers in the compute type, Gather and Gemm;
 * - fp16 weights in a float32 graph: fp16 initializers behind a Cast to float32, which
 *   onnxruntime folds into float32 constants when the session loads (smaller on disk only);
 * - int8 / int4: block-quantized initializers (quantize.ts) read by onnxruntime's contrib ops:
 *   `GatherBlockQuantized` for embedding rows and `MatMulNBits` for products. MatMulNBits runs
 *   with accuracy_level 4: it quantizes each block of 32 activations to int8 on the fly and
 *   multiplies in integers; at levels below 4 int8 weights fall back to dequantizing the whole
 *   matrix on every call (measured 15x slower at B = 1).
 */
import { QUANT_BLOCK_SIZE, quantBits, quantizeBlocks } from '../quantize.js';
import { constant, type GraphContext } from './graph-context.js';
import { TensorDataType } from './proto.js';

/** MatMulNBits' int8 compute path (see the file header). */
const MATMUL_NBITS_ACCURACY_LEVEL = 4;

/** A [rows, columns] matrix as stored in the graph, ready to multiply or gather from. */
export type StoredMatrix =
  | { readonly kind: 'float'; readonly value: string; readonly rows: number }
  | {
      readonly kind: 'quantized';
      readonly data: string;
      readonly scales: string;
      readonly bits: number;
      readonly rows: number;
      readonly columns: number;
    };

/** What a stored matrix is read by: the two quantized ops want their codes in different shapes. */
export type MatrixUse = 'multiply' | 'gather';

/**
 * Stores `values` ([rows, columns], row-major) under `name` in the graph's weight precision, for
 * {@link multiplyTransposed} or for {@link gatherRows}, and tells `ctx.stored` of the values (row
 * batches as they are quantized, so that a large matrix shows progress).
 */
export function storeMatrix(
  ctx: GraphContext,
  name: string,
  values: Float32Array,
  rows: number,
  columns: number,
  use: MatrixUse,
): StoredMatrix {
  const { g } = ctx;
  if (ctx.precision === 'fp16' || ctx.weightPrecision === 'fp32') {
    const value = constant(ctx, name, [rows, columns], values);
    ctx.stored(values.length);
    return { kind: 'float', value, rows };
  }
  if (ctx.weightPrecision === 'fp16') {
    const half = g.floatInitializer(name, [rows, columns], values, TensorDataType.Float16);
    ctx.stored(values.length);
    return { kind: 'float', value: g.op('Cast', [half], { to: TensorDataType.Float }), rows };
  }
  const bits = quantBits(ctx.weightPrecision);
  const q = quantizeBlocks(values, rows, columns, bits, QUANT_BLOCK_SIZE, (done) => {
    ctx.stored(done * columns);
  });
  const blockBytes = (q.blockSize * bits) / 8;
  // MatMulNBits reads [N, blocks, bytes per block]; GatherBlockQuantized [rows, bytes per row].
  const dims =
    use === 'multiply' ? [rows, q.blocksPerRow, blockBytes] : [rows, q.blocksPerRow * blockBytes];
  return {
    kind: 'quantized',
    data: g.initializer(`${name}.q${bits}`, TensorDataType.UInt8, dims, q.data),
    scales: g.initializer(`${name}.scales`, TensorDataType.Float, [rows, q.blocksPerRow], q.scales),
    bits,
    rows,
    columns,
  };
}

/** input [M, columns] times the matrix transposed, plus `bias` [rows] when given: [M, rows]. */
export function multiplyTransposed(
  ctx: GraphContext,
  input: string,
  matrix: StoredMatrix,
  bias?: string,
): string {
  const { g } = ctx;
  if (matrix.kind === 'float') {
    return g.op('Gemm', [input, matrix.value, ...(bias === undefined ? [] : [bias])], {
      transB: 1,
    });
  }
  // Inputs: A, B, scales, zero_points (none: the default 2^(bits-1)), g_idx (none), bias.
  return g.contribOp(
    'MatMulNBits',
    [input, matrix.data, matrix.scales, ...(bias === undefined ? [] : ['', '', bias])],
    {
      K: matrix.columns,
      N: matrix.rows,
      bits: matrix.bits,
      block_size: QUANT_BLOCK_SIZE,
      accuracy_level: MATMUL_NBITS_ACCURACY_LEVEL,
    },
  );
}

/** Rows `indices` (int64, any shape) of the matrix, as float32 (or the fp16 compute type). */
export function gatherRows(ctx: GraphContext, matrix: StoredMatrix, indices: string): string {
  const { g } = ctx;
  if (matrix.kind === 'float') return g.op('Gather', [matrix.value, indices], { axis: 0 });
  if (matrix.columns % QUANT_BLOCK_SIZE !== 0) {
    // GatherBlockQuantized returns whole blocks: padding would widen every row.
    throw new Error(
      `int${matrix.bits} weights need a hidden size that is a multiple of ${QUANT_BLOCK_SIZE}, not ${matrix.columns}`,
    );
  }
  return g.contribOp('GatherBlockQuantized', [matrix.data, indices, matrix.scales], {
    gather_axis: 0,
    quantize_axis: 1,
    block_size: QUANT_BLOCK_SIZE,
    bits: matrix.bits,
  });
}
