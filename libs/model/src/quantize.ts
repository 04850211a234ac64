/**
 * Weight precisions of a bundle's CPU graph and the block-wise integer quantizer behind int8 and
 * int4. The layout is onnxruntime's (com.microsoft `MatMulNBits` and `GatherBlockQuantized`):
 * each row of a [rows, columns] matrix is cut into blocks of {@link QUANT_BLOCK_SIZE} columns;
 * every block has one float32 scale s and values q in [0, 2^bits) read as (q - 2^(bits-1)) * s.
 * 4-bit values are packed two to a byte, the even column in the low nibble.
 *
 * Quantization is symmetric (no stored zero points: the kernels' default 2^(bits-1) is the zero):
 * s = max |w| / (2^(bits-1) - 1) over the block, so |w - dequantized| <= s / 2 for every element.
 * Zero points would spend one more code but measured 1.7x (int4) to 2.3x (int8) slower in
 * MatMulNBits at B = 1 here.
 */
import { PROGRESS_STEP } from './build-progress.js';

export const WEIGHT_PRECISIONS = ['fp32', 'fp16', 'int8', 'int4'] as const;
/**
 * How the CPU graph stores its weights (activations and the DiJiang state stay float32):
 * - fp32: as trained;
 * - fp16: half-precision initializers, widened to float32 when the session loads (a smaller
 *   bundle; the same memory and speed at run time);
 * - int8 / int4: block-quantized matrices run by onnxruntime's weight-only quantized MatMul.
 */
export type WeightPrecision = (typeof WEIGHT_PRECISIONS)[number];

export function isWeightPrecision(value: string): value is WeightPrecision {
  return (WEIGHT_PRECISIONS as readonly string[]).includes(value);
}

/** Bits per quantized weight. */
export type QuantBits = 4 | 8;

export function quantBits(precision: 'int8' | 'int4'): QuantBits {
  return precision === 'int8' ? 8 : 4;
}

/**
 * Columns per quantization block. Timed at B = 1 on the pythia-70m/160m matrix shapes with blocks
 * of 16 to 256: no size was fastest across shapes and runs (the shared machine's noise exceeded
 * the differences), so the choice is a small block that fits the weights closely: 32, the block
 * of llama.cpp's q8_0 and q4_0, which also keeps a side-by-side comparison like for like.
 */
export const QUANT_BLOCK_SIZE = 32;

/** A [rows, columns] matrix quantized row by row in blocks of `blockSize` columns. */
export interface BlockQuantized {
  readonly bits: QuantBits;
  readonly blockSize: number;
  readonly rows: number;
  readonly columns: number;
  /** ceil(columns / blockSize); a last partial block is padded with zeros. */
  readonly blocksPerRow: number;
  /** [rows, blocksPerRow, blockSize * bits / 8] codes. */
  readonly data: Uint8Array;
  /** [rows, blocksPerRow] scales. */
  readonly scales: Float32Array;
}

/** The smallest float32 above a positive float32. */
function nextFloat32Up(value: number): number {
  const float = Float32Array.of(value);
  const bits = new Uint32Array(float.buffer);
  bits[0] = (bits[0] ?? 0) + 1;
  return float[0] ?? Number.NaN;
}

/**
 * The float32 scale of a block whose largest magnitude is `absMax`: absMax / qMax rounded to
 * float32, nudged up when rounding went down, so that |w| / s <= qMax holds exactly and no value
 * is clamped (which would break the s / 2 bound).
 */
function blockScale(absMax: number, qMax: number): number {
  let scale = Math.fround(absMax / qMax);
  while (scale * qMax < absMax) scale = nextFloat32Up(scale);
  return scale;
}

/**
 * Quantizes a [rows, columns] matrix. `onRows`, when given, hears of the rows done, a few at a
 * time (about {@link PROGRESS_STEP} values per report), so a caller can show a long matrix move.
 */
export function quantizeBlocks(
  values: Float32Array,
  rows: number,
  columns: number,
  bits: QuantBits,
  blockSize: number = QUANT_BLOCK_SIZE,
  onRows?: (rows: number) => void,
): BlockQuantized {
  if (values.length !== rows * columns) {
    throw new Error(`quantizeBlocks: ${values.length} values for a ${rows} x ${columns} matrix`);
  }
  if (blockSize % 2 !== 0) throw new Error(`quantizeBlocks: block size ${blockSize} is odd`);
  const zero = 1 << (bits - 1);
  const qMax = zero - 1;
  const blocksPerRow = Math.ceil(columns / blockSize);
  const blockBytes = (blockSize * bits) / 8;
  const data = new Uint8Array(rows * blocksPerRow * blockBytes);
  const scales = new Float32Array(rows * blocksPerRow);
  const rowsPerReport = Math.max(1, Math.floor(PROGRESS_STEP / columns));
  for (let row = 0; row < rows; row++) {
    for (let block = 0; block < blocksPerRow; block++) {
      const start = row * columns + block * blockSize;
      const length = Math.min(blockSize, columns - block * blockSize);
      let absMax = 0;
      for (let i = 0; i < length; i++) absMax = Math.max(absMax, Math.abs(values[start + i] ?? 0));
      const scale = absMax === 0 ? 0 : blockScale(absMax, qMax);
      scales[row * blocksPerRow + block] = scale;
      const blob = (row * blocksPerRow + block) * blockBytes;
      for (let i = 0; i < blockSize; i++) {
        const value = i < length ? (values[start + i] ?? 0) : 0;
        const code = scale === 0 ? zero : zero + Math.round(value / scale);
        if (bits === 8) data[blob + i] = code;
        else data[blob + (i >> 1)] = (data[blob + (i >> 1)] ?? 0) | (code << ((i & 1) * 4));
      }
    }
    // The rows since the last report: a full batch, or what is left at the end.
    if ((row + 1) % rowsPerReport === 0 || row + 1 === rows) onRows?.((row % rowsPerReport) + 1);
  }
  return { bits, blockSize, rows, columns, blocksPerRow, data, scales };
}
