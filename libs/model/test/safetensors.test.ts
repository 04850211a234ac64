import { randomFillSync } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  readSafetensors,
  readSafetensorsCheckpoint,
  readSafetensorsHeader,
  writeSafetensors,
  writeShardedSafetensors,
} from '#model';
import type { SafetensorsDtype, Weights } from '#model';

// Independent reference conversions, written from the IEEE bit layouts with DataView.

const view = new DataView(new ArrayBuffer(4));

function float32FromBits(bits: number): number {
  view.setUint32(0, bits >>> 0);
  return view.getFloat32(0);
}

function bitsOfFloat32(value: number): number {
  view.setFloat32(0, value);
  return view.getUint32(0);
}

/** binary16 bits -> float32 bits by re-biasing the exponent (normalising subnormals by hand). */
function halfToFloat32(half: number): number {
  const sign = (half & 0x8000) << 16;
  let exponent = (half >> 10) & 0x1f;
  let fraction = half & 0x3ff;
  if (exponent === 0x1f) return float32FromBits(sign | 0x7f800000 | (fraction << 13));
  if (exponent === 0) {
    if (fraction === 0) return float32FromBits(sign);
    exponent = 1;
    while ((fraction & 0x400) === 0) {
      fraction <<= 1;
      exponent--;
    }
    fraction &= 0x3ff;
  }
  return float32FromBits(sign | ((exponent - 15 + 127) << 23) | (fraction << 13));
}

function bfloat16ToFloat32(bits: number): number {
  return float32FromBits(bits << 16);
}

const finiteHalves = Array.from({ length: 0x7c00 }, (_, bits) => ({
  bits,
  value: halfToFloat32(bits),
}));
// 65536 stands for infinity's slot when rounding: |x| >= 65520 (the midpoint, a tie whose even
// neighbour is infinity) overflows.
finiteHalves.push({ bits: 0x7c00, value: 65536 });

/** Nearest-even float16 of a float32 value, found by searching the sorted list of all halves. */
function referenceHalf(value: number): number {
  if (Number.isNaN(value)) return NaN;
  const magnitude = Math.abs(Math.fround(value));
  const signBit = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  let low = 0;
  let high = finiteHalves.length - 1;
  if (magnitude >= 65536) return halfToFloat32(signBit | 0x7c00);
  while (high - low > 1) {
    const middle = (low + high) >> 1;
    if ((finiteHalves[middle]?.value ?? 0) <= magnitude) low = middle;
    else high = middle;
  }
  const below = finiteHalves[low];
  const above = finiteHalves[high];
  if (below === undefined || above === undefined) throw new Error('search out of range');
  const distanceBelow = magnitude - below.value;
  const distanceAbove = above.value - magnitude;
  const chosen =
    distanceBelow < distanceAbove || (distanceBelow === distanceAbove && (below.bits & 1) === 0)
      ? below
      : above;
  return halfToFloat32(signBit | chosen.bits);
}

/** Nearest-even bfloat16: compare the two candidates around x in float64 (2^128 for infinity). */
function referenceBfloat16(value: number): number {
  if (Number.isNaN(value)) return NaN;
  const bits = bitsOfFloat32(value);
  const truncated = bits >>> 16;
  const lowValue = bfloat16ToFloat32(truncated);
  const nextBits = truncated + 1;
  const exact = Math.fround(value);
  if ((truncated & 0x7fff) === 0x7f80) return exact; // already infinite
  const highValue =
    (nextBits & 0x7fff) === 0x7f80 ? Math.sign(exact) * 2 ** 128 : bfloat16ToFloat32(nextBits);
  const distanceLow = Math.abs(exact - lowValue);
  const distanceHigh = Math.abs(highValue - exact);
  const chosen =
    distanceLow < distanceHigh || (distanceLow === distanceHigh && (truncated & 1) === 0)
      ? truncated
      : nextBits;
  return bfloat16ToFloat32(chosen);
}

const EDGE_VALUES = [
  0,
  -0,
  1,
  -1,
  Math.fround(1 / 3),
  65504, // float16 max
  65505,
  65519.99, // just under the overflow midpoint
  65520, // the midpoint: rounds to infinity
  -1e5,
  2 ** -14, // float16 smallest normal
  2 ** -24, // float16 smallest subnormal
  2 ** -25, // tie between 0 and the smallest subnormal: rounds to 0
  2 ** -25 * 1.5,
  3 * 2 ** -25, // tie between subnormals 1 and 2: rounds to 2 (even)
  1023 * 2 ** -24 + 2 ** -25, // tie at the subnormal/normal border
  1 + 2 ** -11, // float16 tie: stays 1
  1 + 3 * 2 ** -11, // float16 tie: goes up to even
  1 + 2 ** -8, // bfloat16 tie: stays 1
  1 + 3 * 2 ** -8, // bfloat16 tie: goes up to even
  3.4028234663852886e38, // float32 max: bfloat16 rounds it to infinity
  1e-40, // float32 subnormal
  -(2 ** -149),
  Infinity,
  -Infinity,
  NaN,
];

/** Asserts bit-exact float32 equality (any NaN matches any NaN), listing the first mismatches. */
function expectSameFloat32(actual: Float32Array, expected: readonly number[], label: string): void {
  expect(actual.length, label).toBe(expected.length);
  const mismatches: string[] = [];
  for (let i = 0; i < expected.length && mismatches.length < 5; i++) {
    const want = expected[i] ?? 0;
    const got = actual[i] ?? 0;
    const same = Number.isNaN(want) ? Number.isNaN(got) : Object.is(got, want);
    if (!same) mismatches.push(`[${i}] got ${got}, expected ${want}`);
  }
  expect(mismatches, label).toEqual([]);
}

/** A safetensors file assembled by hand: header JSON, then the given data bytes. */
async function writeRaw(
  file: string,
  header: unknown,
  data: Uint8Array,
  headerLength?: bigint,
): Promise<void> {
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(headerLength ?? BigInt(json.byteLength));
  await writeFile(file, Buffer.concat([length, json, data]));
}

function randomNormals(count: number, seed: number): number[] {
  let state = seed;
  const uniform = (): number => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state + 1) / 2 ** 32;
  };
  return Array.from(
    { length: count },
    () =>
      Math.sqrt(-2 * Math.log(uniform())) *
      Math.cos(2 * Math.PI * uniform()) *
      10 ** (uniform() * 8 - 4),
  );
}

let directory: string;
beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'safetensors-'));
});
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe('safetensors round trips', () => {
  const values = [...EDGE_VALUES, ...randomNormals(500, 7)];
  const weights: Weights = new Map([
    ['edge', { shape: [values.length], data: new Float32Array(values) }],
    ['matrix', { shape: [3, 4], data: new Float32Array(randomNormals(12, 11)) }],
    ['scalar', { shape: [], data: new Float32Array([2.5]) }],
    ['empty', { shape: [0, 3], data: new Float32Array(0) }],
  ]);
  const references: Record<SafetensorsDtype, (value: number) => number> = {
    F32: Math.fround,
    F16: referenceHalf,
    BF16: referenceBfloat16,
  };

  it.each(['F32', 'F16', 'BF16'] as const)(
    'writes and reads %s with exact rounding',
    async (dtype) => {
      const file = join(directory, `round-trip-${dtype}.safetensors`);
      await writeSafetensors(file, weights, { dtype, metadata: { format: 'pt' } });
      const read = await readSafetensors(file);
      expect([...read.keys()]).toEqual([...weights.keys()]);
      for (const [name, tensor] of weights) {
        const got = read.get(name);
        expect(got?.shape, name).toEqual(tensor.shape);
        expectSameFloat32(
          got?.data ?? new Float32Array(),
          [...tensor.data].map(references[dtype]),
          `${dtype} ${name}`,
        );
      }
      const header = await readSafetensorsHeader(file);
      expect(header.metadata).toEqual({ format: 'pt' });
      const first = header.entries.get('edge');
      expect(first?.dtype).toBe(dtype);
      expect((first?.start ?? 1) % 8, 'data starts 8-byte aligned').toBe(0);
    },
  );

  it('decodes every float16 and bfloat16 bit pattern exactly', async () => {
    const patterns = new Uint16Array(1 << 16).map((_, bits) => bits);
    const bytes = new Uint8Array(patterns.buffer);
    const file = join(directory, 'all-halves.safetensors');
    await writeRaw(
      file,
      {
        half: { dtype: 'F16', shape: [256, 256], data_offsets: [0, bytes.byteLength] },
        brain: {
          dtype: 'BF16',
          shape: [1 << 16],
          data_offsets: [bytes.byteLength, 2 * bytes.byteLength],
        },
      },
      Buffer.concat([bytes, bytes]),
    );
    const read = await readSafetensors(file);
    expectSameFloat32(
      read.get('half')?.data ?? new Float32Array(),
      [...patterns].map(halfToFloat32),
      'F16',
    );
    expectSameFloat32(
      read.get('brain')?.data ?? new Float32Array(),
      [...patterns].map(bfloat16ToFloat32),
      'BF16',
    );
  });

  it('reads a tensor larger than one read chunk (64 MiB) in pieces', async () => {
    const count = (1 << 25) + 3; // 64 MiB + 6 bytes of bfloat16
    const bytes = randomFillSync(new Uint8Array(count * 2));
    const file = join(directory, 'large.safetensors');
    await writeRaw(
      file,
      { big: { dtype: 'BF16', shape: [count], data_offsets: [0, bytes.byteLength] } },
      bytes,
    );
    const data = (await readSafetensors(file)).get('big')?.data ?? new Float32Array();
    expect(data.length).toBe(count);
    const halves = new Uint16Array(bytes.buffer);
    for (const i of [0, 1, (1 << 25) - 1, 1 << 25, (1 << 25) + 1, count - 1]) {
      const want = bfloat16ToFloat32(halves[i] ?? 0);
      const got = data[i] ?? 0;
      expect(Number.isNaN(want) ? Number.isNaN(got) : Object.is(got, want), `element ${i}`).toBe(
        true,
      );
    }
    await rm(file);
  });

  it('writes and reads a sharded checkpoint through its index', async () => {
    const sharded = join(directory, 'sharded');
    await writeShardedSafetensors(sharded, weights, { dtype: 'F32', shards: 3 });
    const index = JSON.parse(
      await readFile(join(sharded, 'model.safetensors.index.json'), 'utf8'),
    ) as {
      weight_map: Record<string, string>;
      metadata: { total_size: number };
    };
    expect(Object.keys(index.weight_map).sort()).toEqual([...weights.keys()].sort());
    expect(new Set(Object.values(index.weight_map)).size).toBe(3);
    expect(index.metadata.total_size).toBe((values.length + 12 + 1) * 4);
    const read = await readSafetensorsCheckpoint(sharded);
    for (const [name, tensor] of weights) {
      expect(read.get(name)?.shape).toEqual(tensor.shape);
      expectSameFloat32(read.get(name)?.data ?? new Float32Array(), [...tensor.data], name);
    }
    const subset = await readSafetensorsCheckpoint(sharded, {
      include: (name) => name === 'matrix',
    });
    expect([...subset.keys()]).toEqual(['matrix']);
  });

  it('reads a single-file checkpoint folder', async () => {
    const single = join(directory, 'single');
    await writeShardedSafetensors(single, weights, { shards: 1 });
    await rm(join(single, 'model.safetensors.index.json'));
    await expect(readSafetensorsCheckpoint(single)).rejects.toThrow(/no model\.safetensors or/);
    await writeSafetensors(join(single, 'model.safetensors'), weights, { dtype: 'BF16' });
    const read = await readSafetensorsCheckpoint(single);
    expect(read.get('matrix')?.data).toEqual(
      new Float32Array([...(weights.get('matrix')?.data ?? [])].map(referenceBfloat16)),
    );
  });
});

describe('safetensors errors name the file and the tensor', () => {
  it('rejects an unknown dtype unless the tensor is skipped', async () => {
    const file = join(directory, 'int64.safetensors');
    await writeRaw(
      file,
      {
        ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] },
        scale: { dtype: 'F32', shape: [1], data_offsets: [16, 20] },
      },
      new Uint8Array(20),
    );
    await expect(readSafetensors(file)).rejects.toThrow(
      `safetensors ${file}: tensor "ids" has dtype I64; supported: F32, F16, BF16`,
    );
    const read = await readSafetensors(file, { include: (name) => name !== 'ids' });
    expect([...read.keys()]).toEqual(['scale']);
  });

  it('rejects truncated data', async () => {
    const file = join(directory, 'truncated.safetensors');
    await writeSafetensors(file, new Map([['w', { shape: [4, 4], data: new Float32Array(16) }]]));
    const { size } = await stat(file);
    await truncate(file, size - 3);
    await expect(readSafetensors(file)).rejects.toThrow(
      new RegExp(
        `${file}: tensor "w" is truncated: its data ends at byte ${size}, the file has ${size - 3}`,
      ),
    );
  });

  it('rejects a header length that overflows the file', async () => {
    const file = join(directory, 'overflow.safetensors');
    await writeRaw(file, {}, new Uint8Array(0), 2n ** 63n);
    await expect(readSafetensorsHeader(file)).rejects.toThrow(
      `${file}: header length ${2n ** 63n} overflows the file`,
    );
    await writeFile(join(directory, 'short.safetensors'), new Uint8Array(5));
    await expect(readSafetensors(join(directory, 'short.safetensors'))).rejects.toThrow(
      /too short/,
    );
  });

  it('rejects data offsets that disagree with the shape, and a header that is not JSON', async () => {
    const file = join(directory, 'mismatch.safetensors');
    await writeRaw(
      file,
      { w: { dtype: 'F16', shape: [3], data_offsets: [0, 8] } },
      new Uint8Array(8),
    );
    await expect(readSafetensors(file)).rejects.toThrow(
      `tensor "w": F16 shape [3] needs 6 bytes, data_offsets span 8`,
    );
    const broken = join(directory, 'broken.safetensors');
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(3n);
    await writeFile(broken, Buffer.concat([length, Buffer.from('{no')]));
    await expect(readSafetensors(broken)).rejects.toThrow(
      `safetensors ${broken}: header is not valid JSON`,
    );
  });

  it('rejects a tensor listed in the index but missing from its shard, and a missing shard', async () => {
    const sharded = join(directory, 'bad-index');
    const weights: Weights = new Map([
      ['a', { shape: [2], data: new Float32Array([1, 2]) }],
      ['b', { shape: [2], data: new Float32Array([3, 4]) }],
    ]);
    await writeShardedSafetensors(sharded, weights, { shards: 2 });
    const indexFile = join(sharded, 'model.safetensors.index.json');
    const index = JSON.parse(await readFile(indexFile, 'utf8')) as {
      weight_map: Record<string, string>;
    };
    const firstShard = index.weight_map.a ?? '';
    await writeFile(
      indexFile,
      JSON.stringify({ weight_map: { ...index.weight_map, ghost: firstShard } }),
    );
    await expect(readSafetensorsCheckpoint(sharded)).rejects.toThrow(
      `safetensors ${join(sharded, firstShard)}: tensor "ghost" is listed in model.safetensors.index.json but missing from the shard`,
    );
    await writeFile(
      indexFile,
      JSON.stringify({
        weight_map: { ...index.weight_map, c: 'model-00009-of-00009.safetensors' },
      }),
    );
    await expect(readSafetensorsCheckpoint(sharded)).rejects.toThrow(
      /shard model-00009-of-00009\.safetensors \(holding "c"\) cannot be opened/,
    );
  });
});
