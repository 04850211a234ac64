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
import { open, readFile, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { basename, join } from 'node:path';
import { float16Values } from './float16.js';
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

export const BYTES_PER_ELEMENT: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };

function isSupportedDtype(dtype: string): dtype is SafetensorsDtype {
  return (SAFETENSORS_DTYPES as readonly string[]).includes(dtype);
}

export function assertLittleEndianHost(): void {
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
