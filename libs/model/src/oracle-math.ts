/** Float64 building blocks of the reference model (oracle.ts): plain loops, no ONNX. */
export function layerNorm(
  x: Float64Array,
  width: number,
  weight: Float32Array,
  bias: Float32Array,
  eps: number,
): Float64Array {
  const out = new Float64Array(x.length);
  for (let row = 0; row < x.length / width; row++) {
    const offset = row * width;
    let mean = 0;
    for (let i = 0; i < width; i++) mean += x[offset + i] ?? 0;
    mean /= width;
    let variance = 0;
    for (let i = 0; i < width; i++) variance += ((x[offset + i] ?? 0) - mean) ** 2;
    variance /= width;
    const scale = 1 / Math.sqrt(variance + eps);
    for (let i = 0; i < width; i++) {
      out[offset + i] = ((x[offset + i] ?? 0) - mean) * scale * (weight[i] ?? 0) + (bias[i] ?? 0);
    }
  }
  return out;
}

/** Float64 copies of float32 weights, made once per tensor (mixed-type loops are several times slower). */
const float64Copies = new WeakMap<Float32Array, Float64Array>();

export function asFloat64(values: Float32Array): Float64Array {
  let copy = float64Copies.get(values);
  if (copy === undefined) {
    copy = Float64Array.from(values);
    float64Copies.set(values, copy);
  }
  return copy;
}

/** y = x W^T + b with W in torch's [out, in] layout. */
export function linear(
  x: Float64Array,
  inFeatures: number,
  weight32: Float32Array,
  bias: Float32Array | undefined,
  outFeatures: number,
): Float64Array {
  const weight = asFloat64(weight32);
  const rows = x.length / inFeatures;
  const out = new Float64Array(rows * outFeatures);
  for (let row = 0; row < rows; row++) {
    const input = x.subarray(row * inFeatures, (row + 1) * inFeatures);
    for (let o = 0; o < outFeatures; o++) {
      out[row * outFeatures + o] = (bias?.[o] ?? 0) + dot(input, weight, o * inFeatures);
    }
  }
  return out;
}

/** sum_i a[i] * b[offset + i] over a's length, four partial sums at a time. */
export function dot(a: Float64Array, b: Float64Array, offset: number): number {
  const n = a.length;
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    s0 += (a[i] ?? 0) * (b[offset + i] ?? 0);
    s1 += (a[i + 1] ?? 0) * (b[offset + i + 1] ?? 0);
    s2 += (a[i + 2] ?? 0) * (b[offset + i + 2] ?? 0);
    s3 += (a[i + 3] ?? 0) * (b[offset + i + 3] ?? 0);
  }
  for (; i < n; i++) s0 += (a[i] ?? 0) * (b[offset + i] ?? 0);
  return s0 + s1 + s2 + s3;
}

/** erf(x) = 2/sqrt(pi) e^{-x^2} sum_n 2^n x^{2n+1} / (1*3*...*(2n+1)): all terms positive. */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax >= 6) return Math.sign(x);
  let term = ax;
  let sum = ax;
  for (let n = 1; term > 1e-17 * sum; n++) {
    term *= (2 * ax * ax) / (2 * n + 1);
    sum += term;
  }
  return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * sum;
}

/** Exact (erf) GELU. */
export function gelu(x: number): number {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}
