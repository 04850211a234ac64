import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { freePort } from '#processes';
import { appEntry } from '#testing';

function boot(app: 'gateway' | 'worker', env: Record<string, string>) {
  const result = spawnSync(process.execPath, [appEntry(app)], {
    env: { PATH: process.env.PATH ?? '', ...env },
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { status: result.status, stderr: result.stderr };
}

describe('apps fail at boot with a message that says what to fix', () => {
  it.each(['gateway', 'worker'] as const)('%s names a missing REDIS_URL', (app) => {
    const { status, stderr } = boot(app, {});
    expect(status).toBe(1);
    expect(stderr).toContain('Invalid environment:');
    expect(stderr).toMatch(/REDIS_URL: expected a redis:\/\/ or rediss:\/\/ URL.*it is not set/);
  });

  it('worker names each invalid variable', () => {
    const { status, stderr } = boot('worker', {
      REDIS_URL: 'redis://127.0.0.1:6379',
      WORKER_CAPACITY: 'many',
      WORKER_ID: 'has spaces',
    });
    expect(status).toBe(1);
    expect(stderr).toMatch(/WORKER_ID: expected 1-128 letters.*\(got "has spaces"\)/);
    expect(stderr).toMatch(
      /WORKER_CAPACITY: expected an integer between 1 and 4096 \(got "many"\)/,
    );
  });

  it.each(['gateway', 'worker'] as const)('%s says when Redis is unreachable', async (app) => {
    const port = await freePort();
    const { status, stderr } = boot(app, { REDIS_URL: `redis://127.0.0.1:${port}` });
    expect(status).toBe(1);
    expect(stderr).toContain(`Redis is unreachable at redis://127.0.0.1:${port}`);
    expect(stderr).toContain('Start redis-server or set REDIS_URL');
  });

  it('worker refuses a Redis Cluster without a hash-tagged prefix, saying why', () => {
    const { status, stderr } = boot('worker', { REDIS_CLUSTER_NODES: '127.0.0.1:7000' });
    expect(status).toBe(1);
    expect(stderr).toMatch(
      /QUEUE_PREFIX: Redis Cluster needs a hash-tagged prefix such as \{dijiang\}/,
    );
  });

  // The gateway builds the same message from the same code; one boot (5 s to time out) is enough.
  it('worker says when no sentinel answers, naming what to check', async () => {
    const port = await freePort();
    const { status, stderr } = boot('worker', {
      REDIS_SENTINELS: `127.0.0.1:${port}`,
      REDIS_SENTINEL_NAME: 'main',
    });
    expect(status).toBe(1);
    expect(stderr).toContain(
      `Redis is unreachable at the primary "main" of sentinels 127.0.0.1:${port}`,
    );
    expect(stderr).toContain('Check REDIS_SENTINELS');
  });
});
