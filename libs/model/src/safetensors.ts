/**
 * Safetensors reading and writing (https://huggingface.co/docs/safetensors): an 8-byte
 * little-endian header length N, N bytes of JSON
 * (`{"__metadata__": {...}, NAME: {"dtype", "shape", "data_offsets": [begin, end]}}`, offsets
 * relative to the end of the header), then the raw little-endian tensor data.
 *
 * Tensors are read one by one with positioned reads, in bounded chunks, straight into their
 * Float32Array: a multi-gigabyte checkpoint never needs one Buffer (Node caps those near 4 GiB,
 * and a single read near 2 GiB). F32, F16 and BF16 convert exactly to float32 (subnormals,
 * infinities and NaN included). The host must be little-endian, like every platform Node's
 * prebuilt binaries support; the module refuses to run otherwise instead of reading garbage.
 */
import { mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { basename, join } from 'node:path';
import type { Tensor, Weights } from './weights.js';

export const SAFETENSORS_DTYPES = ['F32', 'F16', 'BF16'] as const;
export type SafetensorsDtype = (typeof SAFETENSORS_DTYPES)[number];

/** The file name of a single-file checkpoint and of a sharded checkpoint's index. */
export const SAFETENSORS_FILE = 'model.safetensors';
export const SAFETENSORS_INDEX_FILE = 'model.safetensors.index.json';

/** Largest header accepted, as in the reference implementation (100 MB); a bigger one is corrupt. */
const MAX_HEADER_BYTES = 100_000_000;
/** Bytes per positioned read: bounded so no huge temporary buffer is ever allocated. */
const READ_CHUNK_BYTES = 1 << 26;

const BYTES_PER_ELEMENT: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };

function isSupportedDtype(dtype: string): dtype is SafetensorsDtype {
  return (SAFETENSORS_DTYPES as readonly string[]).includes(dtype);
}

function assertLittleEndianHost(): void {
  if (endianness() !== 'LE') {
    throw new Error(
      'safetensors: this module needs a little-endian host (tensor data is read in place)',
    );
  }
}

/** One tensor entry of a safetensors header, with its absolute position in the file. */
export interface SafetensorsEntry {
  readonly name: string;
  /** The dtype string as written in the file; it may be one this module cannot convert. */
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Absolute byte offset of the tensor data in the file. */
  readonly start: number;
  readonly byteLength: number;
}

export interface SafetensorsHeader {
  readonly file: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly entries: ReadonlyMap<string, SafetensorsEntry>;
}

export interface ReadSafetensorsOptions {
  /** Which tensors to read (default: all); others are neither converted nor dtype-checked. */
  readonly include?: (name: string) => boolean;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function parseEntry(file: string, name: string, raw: unknown, dataStart: number): SafetensorsEntry {
  const where = `safetensors ${file}: tensor "${name}"`;
  if (!isRecord(raw)) throw new Error(`${where}: header entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = raw;
  if (typeof dtype !== 'string') throw new Error(`${where}: dtype is missing`);
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
    throw new Error(
      `${where}: shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`,
    );
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger)) {
    throw new Error(`${where}: data_offsets must be [begin, end], got ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) throw new Error(`${where}: data_offsets [${begin}, ${end}] end before begin`);
  if (isSupportedDtype(dtype)) {
    const expected =
      shape.reduce((product: number, dim: number) => product * dim, 1) * BYTES_PER_ELEMENT[dtype];
    if (end - begin !== expected) {
      throw new Error(
        `${where}: ${dtype} shape [${shape.join(', ')}] needs ${expected} bytes, data_offsets span ${end - begin}`,
      );
    }
  }
  return { name, dtype, shape, start: dataStart + begin, byteLength: end - begin };
}

async function readExactly(
  handle: FileHandle,
  target: Uint8Array,
  position: number,
): Promise<number> {
  let filled = 0;
  while (filled < target.byteLength) {
    const { bytesRead } = await handle.read(
      target,
      filled,
      target.byteLength - filled,
      position + filled,
    );
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled;
}

async function readHeaderFrom(handle: FileHandle, file: string): Promise<SafetensorsHeader> {
  const { size: fileSize } = await handle.stat();
  const lengthBytes = new Uint8Array(8);
  if ((await readExactly(handle, lengthBytes, 0)) < 8) {
    throw new Error(
      `safetensors ${file}: file is ${fileSize} bytes, too short for the 8-byte header length`,
    );
  }
  const headerLength = new DataView(lengthBytes.buffer).getBigUint64(0, true);
  if (headerLength > BigInt(Math.min(MAX_HEADER_BYTES, fileSize - 8))) {
    throw new Error(
      `safetensors ${file}: header length ${headerLength} overflows the file (${fileSize} bytes, header limit ${MAX_HEADER_BYTES})`,
    );
  }
  const headerBytes = new Uint8Array(Number(headerLength));
  await readExactly(handle, headerBytes, 8);
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(headerBytes));
  } catch (error) {
    throw new Error(`safetensors ${file}: header is not valid JSON`, { cause: error });
  }
  if (!isRecord(parsed)) throw new Error(`safetensors ${file}: header is not a JSON object`);
  const dataStart = 8 + headerBytes.byteLength;
  const metadata: Record<string, string> = {};
  const entries = new Map<string, SafetensorsEntry>();
  for (const [name, raw] of Object.entries(parsed)) {
    if (name === '__metadata__') {
      if (!isRecord(raw)) throw new Error(`safetensors ${file}: __metadata__ is not an object`);
      for (const [key, value] of Object.entries(raw)) metadata[key] = String(value);
      continue;
    }
    const entry = parseEntry(file, name, raw, dataStart);
    if (entry.start + entry.byteLength > fileSize) {
      throw new Error(
        `safetensors ${file}: tensor "${name}" is truncated: its data ends at byte ${entry.start + entry.byteLength}, the file has ${fileSize}`,
      );
    }
    entries.set(name, entry);
  }
  return { file, metadata, entries };
}

/** Reads and validates a safetensors header (no tensor data). */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  const handle = await open(file, 'r');
  try {
    return await readHeaderFrom(handle, file);
  } finally {
    await handle.close();
  }
}

let float16Table: Float32Array | undefined;

/** float32 value of every IEEE binary16 bit pattern, built once (256 KiB). */
function float16Values(): Float32Array {
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

/** Converts `count` elements of `dtype` from `source` into `target` starting at `targetIndex`. */
function convertInto(
  dtype: SafetensorsDtype,
  source: Uint8Array,
  target: Float32Array,
  targetIndex: number,
): void {
  switch (dtype) {
    case 'F32':
      target.set(
        new Float32Array(source.buffer, source.byteOffset, source.byteLength / 4),
        targetIndex,
      );
      return;
    case 'F16': {
      const halves = new Uint16Array(source.buffer, source.byteOffset, source.byteLength / 2);
      const table = float16Values();
      for (let i = 0; i < halves.length; i++)
        target[targetIndex + i] = table[halves[i] ?? 0] ?? NaN;
      return;
    }
    case 'BF16': {
      // bfloat16 is the upper half of a float32: shifting the bits is the exact conversion.
      const halves = new Uint16Array(source.buffer, source.byteOffset, source.byteLength / 2);
      const words = new Uint32Array(
        target.buffer,
        target.byteOffset + targetIndex * 4,
        halves.length,
      );
      for (let i = 0; i < halves.length; i++) words[i] = (halves[i] ?? 0) << 16;
      return;
    }
  }
}

async function readEntry(
  handle: FileHandle,
  file: string,
  entry: SafetensorsEntry,
): Promise<Tensor> {
  const { dtype } = entry;
  if (!isSupportedDtype(dtype)) {
    throw new Error(
      `safetensors ${file}: tensor "${entry.name}" has dtype ${dtype}; supported: ${SAFETENSORS_DTYPES.join(', ')}`,
    );
  }
  const bytesPerElement = BYTES_PER_ELEMENT[dtype];
  const data = new Float32Array(entry.byteLength / bytesPerElement);
  // Chunks hold whole elements and start 4-byte aligned so typed-array views over them are valid.
  const chunk = new Uint8Array(Math.min(READ_CHUNK_BYTES, entry.byteLength));
  for (let done = 0; done < entry.byteLength;) {
    const length = Math.min(chunk.byteLength, entry.byteLength - done);
    const view = chunk.subarray(0, length);
    if ((await readExactly(handle, view, entry.start + done)) < length) {
      throw new Error(
        `safetensors ${file}: tensor "${entry.name}" is truncated (the file changed while reading)`,
      );
    }
    convertInto(dtype, view, data, done / bytesPerElement);
    done += length;
  }
  return { shape: entry.shape, data };
}

/** Reads one safetensors file into float32 tensors. */
export async function readSafetensors(
  file: string,
  options: ReadSafetensorsOptions = {},
): Promise<Weights> {
  assertLittleEndianHost();
  const include = options.include ?? (() => true);
  const handle = await open(file, 'r');
  try {
    const header = await readHeaderFrom(handle, file);
    const weights: Weights = new Map();
    for (const entry of header.entries.values()) {
      if (include(entry.name)) weights.set(entry.name, await readEntry(handle, file, entry));
    }
    return weights;
  } finally {
    await handle.close();
  }
}

/** The `weight_map` of a sharded checkpoint's index: tensor name -> shard file name. */
async function readIndex(indexFile: string): Promise<Map<string, string>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(indexFile, 'utf8'));
  } catch (error) {
    throw new Error(`safetensors index ${indexFile}: not readable JSON`, { cause: error });
  }
  const weightMap = isRecord(parsed) ? parsed.weight_map : undefined;
  if (!isRecord(weightMap))
    throw new Error(`safetensors index ${indexFile}: "weight_map" object is missing`);
  const map = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string' || basename(shard) !== shard) {
      throw new Error(
        `safetensors index ${indexFile}: tensor "${name}" maps to ${JSON.stringify(shard)}, not a file name`,
      );
    }
    map.set(name, shard);
  }
  return map;
}

/** Reads a sharded checkpoint through its index file; shards sit next to the index. */
export async function readShardedSafetensors(
  indexFile: string,
  options: ReadSafetensorsOptions = {},
): Promise<Weights> {
  assertLittleEndianHost();
  const include = options.include ?? (() => true);
  const namesByShard = new Map<string, string[]>();
  for (const [name, shard] of await readIndex(indexFile)) {
    if (!include(name)) continue;
    const names = namesByShard.get(shard) ?? [];
    names.push(name);
    namesByShard.set(shard, names);
  }
  const directory = join(indexFile, '..');
  const weights: Weights = new Map();
  for (const [shard, names] of namesByShard) {
    const file = join(directory, shard);
    const handle = await open(file, 'r').catch((error: unknown) => {
      throw new Error(
        `safetensors index ${indexFile}: shard ${shard} (holding "${names[0] ?? ''}") cannot be opened`,
        {
          cause: error,
        },
      );
    });
    try {
      const header = await readHeaderFrom(handle, file);
      for (const name of names) {
        const entry = header.entries.get(name);
        if (entry === undefined) {
          throw new Error(
            `safetensors ${file}: tensor "${name}" is listed in ${basename(indexFile)} but missing from the shard`,
          );
        }
        weights.set(name, await readEntry(handle, file, entry));
      }
    } finally {
      await handle.close();
    }
  }
  return weights;
}

/**
 * Reads a Hugging Face checkpoint folder: `model.safetensors.index.json` and its shards when the
 * index exists, else `model.safetensors`.
 */
export async function readSafetensorsCheckpoint(
  directory: string,
  options: ReadSafetensorsOptions = {},
): Promise<Weights> {
  const indexFile = join(directory, SAFETENSORS_INDEX_FILE);
  if (await fileExists(indexFile)) return readShardedSafetensors(indexFile, options);
  const single = join(directory, SAFETENSORS_FILE);
  if (await fileExists(single)) return readSafetensors(single, options);
  throw new Error(
    `${directory}: no ${SAFETENSORS_FILE} or ${SAFETENSORS_INDEX_FILE} (only safetensors checkpoints are supported)`,
  );
}

async function fileExists(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
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

function encodeTensor(dtype: SafetensorsDtype, data: Float32Array): Uint8Array {
  switch (dtype) {
    case 'F32':
      return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    case 'F16':
    case 'BF16': {
      const toBits = dtype === 'F16' ? numberToFloat16Bits : numberToBfloat16Bits;
      const halves = new Uint16Array(data.length);
      for (let i = 0; i < data.length; i++) halves[i] = toBits(data[i] ?? 0);
      return new Uint8Array(halves.buffer);
    }
  }
}

export interface WriteSafetensorsOptions {
  /** Storage dtype of every tensor. @defaultValue 'F32' */
  readonly dtype?: SafetensorsDtype;
  /** Free-form string metadata stored under `__metadata__`. */
  readonly metadata?: Readonly<Record<string, string>>;
}

function tensorElementCount(name: string, tensor: Tensor): number {
  const count = tensor.shape.reduce((product, dim) => product * dim, 1);
  if (count !== tensor.data.length) {
    throw new Error(
      `tensor "${name}": shape [${tensor.shape.join(', ')}] has ${count} elements, data has ${tensor.data.length}`,
    );
  }
  return count;
}

/** Writes tensors (in the map's order) as one safetensors file. */
export async function writeSafetensors(
  file: string,
  weights: Weights,
  options: WriteSafetensorsOptions = {},
): Promise<void> {
  assertLittleEndianHost();
  const dtype = options.dtype ?? 'F32';
  const header: Record<string, unknown> = {};
  if (options.metadata !== undefined) header.__metadata__ = options.metadata;
  let offset = 0;
  for (const [name, tensor] of weights) {
    const byteLength = tensorElementCount(name, tensor) * BYTES_PER_ELEMENT[dtype];
    header[name] = { dtype, shape: tensor.shape, data_offsets: [offset, offset + byteLength] };
    offset += byteLength;
  }
  // Pad the header with spaces to a multiple of 8 bytes, as the reference writer does, so data
  // that follows is aligned for in-place typed-array views.
  const json = JSON.stringify(header);
  const jsonLength = Buffer.byteLength(json);
  const headerBytes = Buffer.from(json.padEnd(json.length + ((8 - (jsonLength % 8)) % 8), ' '));
  const lengthBytes = Buffer.alloc(8);
  lengthBytes.writeBigUInt64LE(BigInt(headerBytes.byteLength));
  const handle = await open(file, 'w');
  try {
    await handle.write(lengthBytes);
    await handle.write(headerBytes);
    for (const tensor of weights.values()) await handle.write(encodeTensor(dtype, tensor.data));
  } finally {
    await handle.close();
  }
}

export interface WriteShardedSafetensorsOptions extends WriteSafetensorsOptions {
  /** Number of shard files, at most the number of tensors; tensors keep their order. */
  readonly shards: number;
}

/**
 * Writes tensors as `model-0000i-of-0000N.safetensors` shards plus `model.safetensors.index.json`
 * in `directory` (created if missing), the layout Hugging Face uses for large checkpoints.
 */
export async function writeShardedSafetensors(
  directory: string,
  weights: Weights,
  options: WriteShardedSafetensorsOptions,
): Promise<void> {
  const { shards } = options;
  if (!Number.isInteger(shards) || shards < 1 || shards > weights.size) {
    throw new Error(`shards must be an integer in [1, ${weights.size}], got ${shards}`);
  }
  await mkdir(directory, { recursive: true });
  const entries = [...weights];
  const bytesPerElement = BYTES_PER_ELEMENT[options.dtype ?? 'F32'];
  const width = Math.max(5, String(shards).length);
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  for (let shard = 0; shard < shards; shard++) {
    const shardName = `model-${String(shard + 1).padStart(width, '0')}-of-${String(shards).padStart(width, '0')}.safetensors`;
    // Contiguous runs of equal tensor count, so every shard holds at least one tensor.
    const group: Weights = new Map(
      entries.slice(
        Math.floor((shard * entries.length) / shards),
        Math.floor(((shard + 1) * entries.length) / shards),
      ),
    );
    for (const [name, tensor] of group) {
      weightMap[name] = shardName;
      totalSize += tensorElementCount(name, tensor) * bytesPerElement;
    }
    await writeSafetensors(join(directory, shardName), group, options);
  }
  const index = { metadata: { total_size: totalSize }, weight_map: weightMap };
  await writeFile(join(directory, SAFETENSORS_INDEX_FILE), `${JSON.stringify(index, null, 2)}\n`);
}
