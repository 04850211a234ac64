import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { redisKeys } from '#contracts';
import { PrefixCache } from '#cluster';
import { deletePrefix, uniquePrefix } from '#testing';

describe('PrefixCache (real Redis)', () => {
  let redis: Redis;
  const prefix = uniquePrefix('pfx');
  const keys = redisKeys(prefix);
  const state = (fill: number, bytes = 1000): Buffer => Buffer.alloc(bytes, fill);

  beforeAll(() => {
    redis = new Redis(inject('redisUrl'));
  });
  afterAll(async () => {
    await deletePrefix(redis, prefix);
    await redis.quit();
  });

  it('returns the longest cached prefix and counts hits and misses', async () => {
    const cache = new PrefixCache(redis, keys, 'model-a', 1_000_000);
    expect(await cache.lookup([{ tokens: 256, hash: 'h256' }])).toBeUndefined();
    await cache.store('h256', state(1));
    await cache.store('h512', state(2));
    const hit = await cache.lookup([
      { tokens: 256, hash: 'h256' },
      { tokens: 512, hash: 'h512' },
      { tokens: 768, hash: 'h768' },
    ]);
    expect(hit?.tokens).toBe(512);
    expect(hit?.state.equals(state(2))).toBe(true);
    // Another model never sees these states.
    expect(
      await new PrefixCache(redis, keys, 'model-b', 1_000_000).lookup([
        { tokens: 512, hash: 'h512' },
      ]),
    ).toBeUndefined();
    expect(await cache.stats()).toEqual({ hits: 1, misses: 2, bytes: 2000, evictions: 0 });
  });

  it('stays within its byte bound, evicting the least recently used state', async () => {
    const bounded = uniquePrefix('pfx-bound');
    const cache = new PrefixCache(redis, redisKeys(bounded), 'm', 2500);
    await cache.store('a', state(1));
    await cache.store('b', state(2));
    // Using 'a' makes 'b' the least recently used.
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect((await cache.lookup([{ tokens: 1, hash: 'a' }]))?.tokens).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    await cache.store('c', state(3));
    expect(await cache.lookup([{ tokens: 2, hash: 'b' }])).toBeUndefined();
    expect((await cache.lookup([{ tokens: 1, hash: 'a' }]))?.state.equals(state(1))).toBe(true);
    expect((await cache.lookup([{ tokens: 3, hash: 'c' }]))?.state.equals(state(3))).toBe(true);
    expect(await cache.stats()).toMatchObject({ bytes: 2000, evictions: 1 });
    // A state larger than the whole bound is not stored at all.
    await cache.store('huge', state(4, 5000));
    expect(await cache.lookup([{ tokens: 9, hash: 'huge' }])).toBeUndefined();
    await deletePrefix(redis, bounded);
  });
});
