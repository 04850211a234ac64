import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { RedisSentinelSet, sentinelPrimaryAddress, type RedisSentinelSetOptions } from '#processes';

async function onServer<T>(port: number, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0 });
  try {
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

/**
 * A Sentinel set keeps its data across runs like the single managed Redis (`dijiang up`), and a
 * failover between runs does not lose what the promoted server took: the next start makes it the
 * primary again instead of replicating the old primary's older data over it.
 */
describe('RedisSentinelSet', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dijiang-sentinel-set-'));
  const options: RedisSentinelSetOptions = {
    dir,
    masterName: 'set-test',
    appendOnly: true,
    downAfterMs: 1000,
    failoverTimeoutMs: 4000,
  };
  const running: RedisSentinelSet[] = [];
  afterAll(async () => {
    await Promise.all(running.map((set) => set.stop('SIGKILL')));
    rmSync(dir, { recursive: true, force: true });
  });

  it('restarts after a failover with the promoted server as the primary, keeping every write', async () => {
    const first = await RedisSentinelSet.start(options);
    running.push(first);
    expect(await sentinelPrimaryAddress(first.sentinelPorts[0] ?? 0, 'set-test')).toEqual({
      host: '127.0.0.1',
      port: first.primary.port,
    });
    await onServer(first.primary.port, (redis) => redis.set('written-before', '1'));
    await first.primary.stop('SIGKILL');
    await first.waitForSentinels((master) => master.port === String(first.replica.port), 30_000);
    await onServer(first.replica.port, (redis) => redis.set('written-after', '2'));
    await first.stop();
    running.pop();
    expect(readFileSync(join(dir, 'primary'), 'utf8').trim()).toBe('server-2');

    const second = await RedisSentinelSet.start(options);
    running.push(second);
    for (const server of [second.primary, second.replica]) {
      expect(
        await onServer(server.port, (redis) => redis.mget('written-before', 'written-after')),
        server.name,
      ).toEqual(['1', '2']);
    }
  }, 90_000);
});
