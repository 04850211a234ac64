import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayKeys, RATE_LIMIT_WINDOW_MS, redisKeys } from '#contracts';
import { chargeTenantTokens, PrefixCache } from '#cluster';
import { TestRedis, uniquePrefix } from '#testing';

/**
 * The cluster's Lua scripts travel once per connection: EVAL with the body the first time, then
 * EVALSHA with its SHA1. Counted by the server itself (INFO commandstats), on a private Redis so
 * that no other test's scripts are counted.
 */
describe('Lua scripts run by SHA after their first call (real Redis)', () => {
  let server: TestRedis;
  let redis: Redis;
  const prefix = uniquePrefix('lua');
  const keys = redisKeys(prefix);
  const tenant = 'tenant-a';

  beforeAll(async () => {
    server = await TestRedis.start();
    redis = new Redis(server.url);
    await redis.config('RESETSTAT');
  });
  afterAll(async () => {
    await redis.quit();
    await server.stop();
  });

  /** Calls of `command` the server has run since the last CONFIG RESETSTAT. */
  const calls = async (command: 'eval' | 'evalsha'): Promise<number> => {
    const stats = await redis.info('commandstats');
    const match = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(stats);
    return Number(match?.[1] ?? 0);
  };
  /** Tokens charged to the tenant, over the rate-limit windows the test may have spanned. */
  const chargedTokens = async (windows: ReadonlySet<number>): Promise<number> => {
    let total = 0;
    for (const window of windows) {
      total += Number(await redis.get(gatewayKeys(prefix).rateLimit(tenant, 'tokens', window)));
    }
    return total;
  };
  const currentWindow = (): number => Math.floor(Date.now() / RATE_LIMIT_WINDOW_MS);

  it('sends each script body once per connection, also to several stores on one client', async () => {
    const windows = new Set([currentWindow()]);
    for (const jobId of ['job-1', 'job-2', 'job-3']) {
      await chargeTenantTokens(redis, keys, jobId, tenant, 10);
    }
    // A retried completion charges nothing, by SHA too.
    await chargeTenantTokens(redis, keys, 'job-1', tenant, 10);
    windows.add(currentWindow());
    expect(await chargedTokens(windows)).toBe(30);
    // The cluster's throughput counter counts each job once as well.
    expect(await redis.get(keys.tokensProcessed)).toBe('30');

    const state = Buffer.alloc(100, 7);
    const first = new PrefixCache(redis, keys, 'm', 1_000_000, 100);
    const second = new PrefixCache(redis, keys, 'm', 1_000_000, 100);
    const boundaries = [
      { tokens: 16, hash: 'h16' },
      { tokens: 32, hash: 'h32' },
    ];
    const claimant = { id: 'claimant', stopWaiting: () => false };
    expect(await first.lookup(boundaries, claimant)).toBeUndefined();
    await first.renewClaims('claimant');
    await first.store('h16', state, 'claimant');
    await second.store('h32', state);
    await first.releaseClaims('claimant');
    expect((await second.lookup(boundaries))?.tokens).toBe(32);

    // 4 charges, 2 look-ups, 2 stores, a renewal and a release: 10 script calls of 4 scripts.
    expect(await calls('eval')).toBe(4);
    expect(await calls('evalsha')).toBe(6);
  });

  it('still runs a script that Redis has forgotten (SCRIPT FLUSH, a restarted Redis)', async () => {
    const windows = new Set([currentWindow()]);
    const before = await chargedTokens(windows);
    const evals = await calls('eval');
    await redis.script('FLUSH');
    await chargeTenantTokens(redis, keys, 'job-after-flush', tenant, 5);
    windows.add(currentWindow());
    expect((await chargedTokens(windows)) - before).toBe(5);
    // The EVALSHA was refused (NOSCRIPT), then the body went again, once.
    expect(await calls('eval')).toBe(evals + 1);
    await chargeTenantTokens(redis, keys, 'job-after-flush-2', tenant, 5);
    expect(await calls('eval')).toBe(evals + 1);
  });
});
