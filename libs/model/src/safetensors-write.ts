/** Writing safetensors files, whole or sharded with an index (format: see safetensors.ts). */
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { numberToBfloat16Bits, numberToFloat16Bits } from './float16.js';
import {
  assertLittleEndianHost,
  BYTES_PER_ELEMENT,
  SAFETENSORS_INDEX_FILE,
  type SafetensorsDtype,
} from './safetensors.js';
import type { Tensor, Weights } from './weights.js';

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
