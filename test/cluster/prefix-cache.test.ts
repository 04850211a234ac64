import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { redisKeys } from '#contracts';
import { createLogger, createRedis, PrefixCache, type RedisClient } from '#cluster';
import { deletePrefix, uniqueTaggedPrefix as uniquePrefix } from '#testing';

/**
 * The cache's Lua scripts run on a single Redis and on a three-primary Redis Cluster, where
 * every key of a script must hash to one slot (the prefixes are hash-tagged, as Cluster mode
 * requires): the store script's eviction deletes keys it reads from the LRU index.
 */
const modes = [
  ['a single Redis', inject('redisUrl')],
  ['a Redis Cluster', inject('redisCluster').target],
] as const;
const connect = (target: (typeof modes)[number][1]): RedisClient =>
  createRedis(target, 'queue', 'prefix-cache-test', createLogger('prefix-cache-test', 'silent'));

describe.each(modes)('PrefixCache (%s)', (_mode, target) => {
  let redis: RedisClient;
  const prefix = uniquePrefix('pfx');
  const keys = redisKeys(prefix);
  const state = (fill: number, bytes = 1000): Buffer => Buffer.alloc(bytes, fill);

  beforeAll(() => {
    redis = connect(target);
  });
  afterAll(async () => {
    await deletePrefix(redis, prefix);
    await redis.quit();
  });

  it('returns the longest cached prefix and counts hits and misses', async () => {
    const cache = new PrefixCache(redis, keys, 'model-a', 1_000_000, 1000);
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
      await new PrefixCache(redis, keys, 'model-b', 1_000_000, 1000).lookup([
        { tokens: 512, hash: 'h512' },
      ]),
    ).toBeUndefined();
    expect(await cache.stats()).toEqual({ hits: 1, misses: 2, bytes: 2000, evictions: 0 });
  });

  it('stays within its byte bound, evicting the least recently used state', async () => {
    const bounded = uniquePrefix('pfx-bound');
    const cache = new PrefixCache(redis, redisKeys(bounded), 'm', 2500, 1000);
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

describe.each(modes)(
  'PrefixCache claims: a shared prefix is computed once (%s)',
  (_mode, target) => {
    let redis: RedisClient;
    const prefix = uniquePrefix('pfx-claim');
    const keys = redisKeys(prefix);
    const state = (fill: number): Buffer => Buffer.alloc(100, fill);
    const boundaries = [
      { tokens: 16, hash: 'c16' },
      { tokens: 32, hash: 'c32' },
    ];
    const claimant = (id: string, stop = () => false) => ({ id, stopWaiting: stop });
    const pending = async (promise: Promise<unknown>): Promise<boolean> =>
      Promise.race([
        promise.then(() => false),
        new Promise<boolean>((resolve) => {
          setTimeout(() => {
            resolve(true);
          }, 150);
        }),
      ]);

    beforeAll(() => {
      redis = connect(target);
    });
    afterAll(async () => {
      await deletePrefix(redis, prefix);
      await redis.quit();
    });

    it('makes a second sequence wait for each boundary the first one claimed', async () => {
      const cache = new PrefixCache(redis, keys, 'wait', 1_000_000, 100);
      expect(await cache.lookup(boundaries, claimant('first'))).toBeUndefined();
      const second = cache.lookup(boundaries, claimant('second'));
      expect(await pending(second)).toBe(true);
      await cache.store('c16', state(1), 'first');
      // Boundary 16 is there, but 32 is still being computed by 'first': keep waiting for it.
      expect(await pending(second)).toBe(true);
      await cache.store('c32', state(2), 'first');
      const hit = await second;
      expect(hit?.tokens).toBe(32);
      expect(hit?.state.equals(state(2))).toBe(true);
      expect(await cache.stats()).toMatchObject({ hits: 1, misses: 1 });
    });

    it('lets a waiter compute the prefix itself when the claimant gives up or stops renewing', async () => {
      const cache = new PrefixCache(redis, keys, 'release', 1_000_000, 100);
      expect(await cache.lookup(boundaries, claimant('quitter'))).toBeUndefined();
      const second = cache.lookup(boundaries, claimant('second'));
      expect(await pending(second)).toBe(true);
      await cache.releaseClaims('quitter');
      expect(await second).toBeUndefined();
      // 'second' now holds both claims; a dead claimant's claim expires on its own.
      await redis.pexpire(keys.prefixClaim('release', 'c16'), 100);
      await redis.pexpire(keys.prefixClaim('release', 'c32'), 100);
      expect(await cache.lookup(boundaries, claimant('third'))).toBeUndefined();
      expect(await redis.get(keys.prefixClaim('release', 'c16'))).toBe('third');
    });

    it('stops waiting when the sequence asks to (cancelled, shutting down)', async () => {
      const cache = new PrefixCache(redis, keys, 'stop', 1_000_000, 100);
      await cache.lookup(boundaries, claimant('holder'));
      let stop = false;
      const waiter = cache.lookup(
        boundaries,
        claimant('waiter', () => stop),
      );
      expect(await pending(waiter)).toBe(true);
      stop = true;
      expect(await waiter).toBeUndefined();
      // It took no claim: the holder's stay.
      expect(await redis.get(keys.prefixClaim('stop', 'c16'))).toBe('holder');
    });

    it('claims nothing when a state cannot fit the cache', async () => {
      const cache = new PrefixCache(redis, keys, 'small', 50, 100);
      expect(await cache.lookup(boundaries, claimant('a'))).toBeUndefined();
      expect(await cache.lookup(boundaries, claimant('b'))).toBeUndefined();
      expect(await redis.exists(keys.prefixClaim('small', 'c16'))).toBe(0);
    });
  },
);
