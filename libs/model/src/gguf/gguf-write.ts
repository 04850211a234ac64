/**
 * A GGUF version 3 writer (the file format of llama.cpp and ggml): header, typed metadata, tensor
 * descriptors, then the tensor data, each tensor aligned to `general.alignment` (32) bytes. All
 * integers little-endian. Tensor dims are written in ggml order, innermost first, so a row-major
 * torch [out, in] weight is described as [in, out] with the same bytes.
 * Spec: ggml's docs/gguf.md. Tensor payloads are written one at a time, so a file larger than
 * memory can be written.
 */
import { open } from 'node:fs/promises';
import { numberToFloat16Bits } from '../float16.js';

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32
const GGUF_VERSION = 3;
/** ggml's default; also written as `general.alignment` so readers need not assume it. */
export const GGUF_ALIGNMENT = 32;

/** GGUF metadata value types (gguf_type). */
const ValueType = { Uint32: 4, Int32: 5, Float32: 6, Bool: 7, String: 8, Array: 9 } as const;

/** A metadata value, tagged with the GGUF type it is written as. */
export type GgufValue =
  | { type: 'u32'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'strings'; value: readonly string[] }
  | { type: 'i32s'; value: readonly number[] };

/** ggml tensor types this writer can encode (ggml_type numbers). */
export const GGML_TYPES = { f32: 0, f16: 1, q4_0: 2, q8_0: 8 } as const;
export type GgmlTensorType = keyof typeof GGML_TYPES;

/**
 * Both quantised types take blocks of 32 values that share one fp16 scale: q8_0 stores the scale
 * then 32 int8 (34 bytes), q4_0 the scale then 16 bytes of 4-bit values (18 bytes).
 */
export const QUANT_BLOCK = 32;
const BLOCK_BYTES = { q8_0: 2 + QUANT_BLOCK, q4_0: 2 + QUANT_BLOCK / 2 } as const;

export interface GgufTensor {
  name: string;
  /** ggml order: innermost (contiguous) dimension first. */
  dims: readonly number[];
  type: GgmlTensorType;
  /** Row-major float32 values, encoded to `type` when written. */
  data: Float32Array;
}

function alignUp(offset: number): number {
  return Math.ceil(offset / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
}

/** Bytes of a tensor's payload once encoded. */
export function encodedBytes(tensor: Pick<GgufTensor, 'dims' | 'type'>): number {
  const count = tensor.dims.reduce((product, dim) => product * dim, 1);
  switch (tensor.type) {
    case 'f32':
      return 4 * count;
    case 'f16':
      return 2 * count;
    case 'q8_0':
    case 'q4_0':
      return (count / QUANT_BLOCK) * BLOCK_BYTES[tensor.type];
  }
}

/**
 * ggml's reference q8_0 quantisation (quantize_row_q8_0_ref): per block d = max|x| / 127 stored
 * as fp16, q = round-half-away-from-zero(x / d) computed with the float32 scale.
 */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  const blocks = blockCount(values, 'q8_0');
  const out = new Uint8Array(blocks * BLOCK_BYTES.q8_0);
  const view = new DataView(out.buffer);
  for (let block = 0; block < blocks; block++) {
    const start = block * QUANT_BLOCK;
    let amax = 0;
    for (let i = 0; i < QUANT_BLOCK; i++) amax = Math.max(amax, Math.abs(values[start + i] ?? 0));
    const scale = Math.fround(amax / 127);
    const inverse = scale === 0 ? 0 : Math.fround(1 / scale);
    const base = block * BLOCK_BYTES.q8_0;
    view.setUint16(base, numberToFloat16Bits(scale), true);
    for (let i = 0; i < QUANT_BLOCK; i++) {
      const scaled = Math.fround((values[start + i] ?? 0) * inverse);
      view.setInt8(base + 2 + i, Math.sign(scaled) * Math.round(Math.abs(scaled)));
    }
  }
  return out;
}

/**
 * ggml's reference q4_0 quantisation (quantize_row_q4_0_ref): per block the value of largest
 * magnitude m gives d = m / -8 (fp16), q = min(15, trunc(x / d + 8.5)); byte j holds value j in
 * its low nibble and value j + 16 in its high nibble.
 */
export function quantizeQ4_0(values: Float32Array): Uint8Array {
  const blocks = blockCount(values, 'q4_0');
  const out = new Uint8Array(blocks * BLOCK_BYTES.q4_0);
  const view = new DataView(out.buffer);
  const half = QUANT_BLOCK / 2;
  for (let block = 0; block < blocks; block++) {
    const start = block * QUANT_BLOCK;
    let extreme = 0;
    for (let i = 0; i < QUANT_BLOCK; i++) {
      const value = values[start + i] ?? 0;
      if (Math.abs(value) > Math.abs(extreme)) extreme = value;
    }
    const scale = Math.fround(extreme / -8);
    const inverse = scale === 0 ? 0 : Math.fround(1 / scale);
    const base = block * BLOCK_BYTES.q4_0;
    view.setUint16(base, numberToFloat16Bits(scale), true);
    const level = (value: number): number =>
      Math.min(15, Math.trunc(Math.fround(Math.fround(value * inverse) + 8.5)));
    for (let j = 0; j < half; j++) {
      const low = level(values[start + j] ?? 0);
      const high = level(values[start + half + j] ?? 0);
      view.setUint8(base + 2 + j, low | (high << 4));
    }
  }
  return out;
}

function blockCount(values: Float32Array, type: 'q8_0' | 'q4_0'): number {
  if (values.length % QUANT_BLOCK !== 0) {
    throw new Error(`${type} needs a multiple of ${QUANT_BLOCK} values, got ${values.length}`);
  }
  return values.length / QUANT_BLOCK;
}

function encodeTensor(tensor: GgufTensor): Uint8Array {
  switch (tensor.type) {
    case 'f32':
      return new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
    case 'f16': {
      const bits = new Uint16Array(tensor.data.length);
      for (let i = 0; i < bits.length; i++) bits[i] = numberToFloat16Bits(tensor.data[i] ?? 0);
      return new Uint8Array(bits.buffer);
    }
    case 'q8_0':
      return quantizeQ8_0(tensor.data);
    case 'q4_0':
      return quantizeQ4_0(tensor.data);
  }
}

/** Growing little-endian byte buffer for the header part of the file. */
class HeaderWriter {
  private bytes = new Uint8Array(1 << 16);
  private view = new DataView(this.bytes.buffer);
  length = 0;

  /** Makes room for `count` bytes and returns where they start; may replace the buffer. */
  private reserve(count: number): number {
    if (this.length + count > this.bytes.length) {
      const grown = new Uint8Array(Math.max(2 * this.bytes.length, this.length + count));
      grown.set(this.bytes);
      this.bytes = grown;
      this.view = new DataView(grown.buffer);
    }
    const at = this.length;
    this.length += count;
    return at;
  }
  u8(value: number): void {
    const at = this.reserve(1);
    this.view.setUint8(at, value);
  }
  u32(value: number): void {
    const at = this.reserve(4);
    this.view.setUint32(at, value, true);
  }
  i32(value: number): void {
    const at = this.reserve(4);
    this.view.setInt32(at, value, true);
  }
  u64(value: number): void {
    const at = this.reserve(8);
    this.view.setBigUint64(at, BigInt(value), true);
  }
  f32(value: number): void {
    const at = this.reserve(4);
    this.view.setFloat32(at, value, true);
  }
  string(value: string): void {
    const encoded = new TextEncoder().encode(value);
    this.u64(encoded.length);
    // Reserve first: it may replace `this.bytes` with a larger buffer.
    const at = this.reserve(encoded.length);
    this.bytes.set(encoded, at);
  }
  padTo(length: number): void {
    this.reserve(length - this.length);
  }
  result(): Uint8Array {
    return this.bytes.subarray(0, this.length);
  }
}

function writeValue(out: HeaderWriter, value: GgufValue): void {
  switch (value.type) {
    case 'u32':
      out.u32(ValueType.Uint32);
      out.u32(value.value);
      return;
    case 'f32':
      out.u32(ValueType.Float32);
      out.f32(value.value);
      return;
    case 'bool':
      out.u32(ValueType.Bool);
      out.u8(value.value ? 1 : 0);
      return;
    case 'string':
      out.u32(ValueType.String);
      out.string(value.value);
      return;
    case 'strings':
      out.u32(ValueType.Array);
      out.u32(ValueType.String);
      out.u64(value.value.length);
      for (const item of value.value) out.string(item);
      return;
    case 'i32s':
      out.u32(ValueType.Array);
      out.u32(ValueType.Int32);
      out.u64(value.value.length);
      for (const item of value.value) out.i32(item);
      return;
  }
}

/**
 * Writes a GGUF v3 file: `metadata` in insertion order (`general.alignment` is added), then the
 * tensors in order. Tensors are encoded one by one while writing; the list may be lazy.
 */
export async function writeGguf(
  path: string,
  metadata: ReadonlyMap<string, GgufValue>,
  tensors: readonly GgufTensor[],
): Promise<{ bytes: number }> {
  const entries = new Map(metadata);
  entries.set('general.alignment', { type: 'u32', value: GGUF_ALIGNMENT });
  const header = new HeaderWriter();
  header.u32(GGUF_MAGIC);
  header.u32(GGUF_VERSION);
  header.u64(tensors.length);
  header.u64(entries.size);
  for (const [key, value] of entries) {
    header.string(key);
    writeValue(header, value);
  }
  let offset = 0;
  for (const tensor of tensors) {
    const count = tensor.dims.reduce((product, dim) => product * dim, 1);
    if (count !== tensor.data.length) {
      throw new Error(
        `tensor ${tensor.name}: dims [${tensor.dims.join(', ')}] need ${count} values, got ${tensor.data.length}`,
      );
    }
    if (tensor.type in BLOCK_BYTES && (tensor.dims[0] ?? 0) % QUANT_BLOCK !== 0) {
      throw new Error(
        `tensor ${tensor.name}: ${tensor.type} rows must be a multiple of ${QUANT_BLOCK} values, got ${tensor.dims[0]}`,
      );
    }
    header.string(tensor.name);
    header.u32(tensor.dims.length);
    for (const dim of tensor.dims) header.u64(dim);
    header.u32(GGML_TYPES[tensor.type]);
    header.u64(offset);
    offset = alignUp(offset + encodedBytes(tensor));
  }
  header.padTo(alignUp(header.length));
  const file = await open(path, 'w');
  try {
    await file.write(header.result());
    let written = header.length;
    for (const tensor of tensors) {
      const payload = encodeTensor(tensor);
      const padding = alignUp(payload.length) - payload.length;
      await file.write(payload);
      if (padding > 0) await file.write(new Uint8Array(padding));
      written += payload.length + padding;
    }
    return { bytes: written };
  } finally {
    await file.close();
  }
}
