/** Exact conversions between numbers and IEEE binary16 / bfloat16 bit patterns. */
let float16Table: Float32Array | undefined;

/** float32 value of every IEEE binary16 bit pattern, built once (256 KiB). */
export function float16Values(): Float32Array {
  if (float16Table === undefined) {
    float16Table = new Float32Array(1 << 16);
    for (let bits = 0; bits < 1 << 16; bits++) float16Table[bits] = float16BitsToNumber(bits);
  }
  return float16Table;
}

/** The exact value of an IEEE binary16 bit pattern. */
export function float16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1024 + fraction) * 2 ** (exponent - 25);
}

const scratchFloat = new Float32Array(1);
const scratchBits = new Uint32Array(scratchFloat.buffer);

/** The bits of `value` rounded to float32. */
function float32Bits(value: number): number {
  scratchFloat[0] = value;
  return scratchBits[0] ?? 0;
}

/** float32 -> IEEE binary16 bits, round to nearest even; overflow gives infinity, NaN stays NaN. */
export function numberToFloat16Bits(value: number): number {
  const bits = float32Bits(value);
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa === 0 ? 0 : 0x200);
  // Unbiased exponent e: float16 normals have e in [-14, 15]; below, subnormal steps of 2^-24.
  const unbiased = exponent - 127; // float32 subnormals (exponent 0) are far below float16's range
  if (unbiased > 15) return sign | 0x7c00;
  const significand = mantissa | (exponent === 0 ? 0 : 0x800000); // value = significand * 2^(e-23)
  // Shift so the result counts units of the target's last place: 2^(e_h - 10), e_h >= -14.
  const shift = unbiased < -14 ? 13 + (-14 - unbiased) : 13;
  if (shift > 24) return sign; // below half the smallest subnormal: rounds to zero
  const truncated = significand >>> shift;
  const remainder = significand & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  const rounded =
    remainder > half || (remainder === half && (truncated & 1) === 1) ? truncated + 1 : truncated;
  // For normals `rounded` still holds the implicit bit (0x400): adding the exponent field over it
  // carries correctly into the next binade and, past 65504, into infinity's pattern.
  if (unbiased < -14) return sign | rounded;
  return sign | ((((unbiased + 15) << 10) + rounded - 0x400) & 0x7fff);
}

/** float32 -> bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN. */
export function numberToBfloat16Bits(value: number): number {
  const bits = float32Bits(value);
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x40) & 0xffff;
  const rounding = 0x7fff + ((bits >>> 16) & 1);
  return ((bits + rounding) >>> 16) & 0xffff;
}
