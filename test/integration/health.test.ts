import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServiceProcess } from '#processes';
import { startGateway, startWorker, TestRedis, uniquePrefix, type TestGateway } from '#testing';
import { waitFor } from '../support/wait.js';

interface Readiness {
  status: string;
  redis: { status: string };
  workers: { live: number; list: { id: string; pid: number }[] };
}

const API_KEY = 'sk-health-0123456789';

/** Fault tests kill Redis, so this file runs its own private redis-server. */
describe('gateway health against a real Redis that goes away and comes back', () => {
  let redis: TestRedis;
  let gateway: TestGateway;
  let worker: ServiceProcess;
  const prefix = uniquePrefix('health');

  const ready = async (): Promise<{ status: number; body: Readiness }> => {
    const response = await fetch(`${gateway.url}/health/ready`);
    return { status: response.status, body: (await response.json()) as Readiness };
  };

  beforeAll(async () => {
    redis = await TestRedis.start();
    gateway = await startGateway(redis.url, { QUEUE_PREFIX: prefix, API_KEYS: API_KEY });
    worker = await startWorker(redis.url, {
      QUEUE_PREFIX: prefix,
      WORKER_ID: 'w-health',
      WORKER_TTL_MS: '2000',
    });
  });
  afterAll(async () => {
    await worker.stop('SIGKILL');
    await gateway.service.stop();
    await redis.stop();
  });

  it('reports liveness', async () => {
    const response = await fetch(`${gateway.url}/health/live`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok' });
  });

  it('is ready with Redis up and lists the live workers', async () => {
    const { status, body } = await ready();
    expect(status).toBe(200);
    expect(body.status).toBe('ready');
    expect(body.redis.status).toBe('up');
    expect(body.workers.live).toBe(1);
    expect(body.workers.list[0]).toMatchObject({ id: 'w-health', pid: worker.pid });
  });

  it('tags each response with a request id, keeping a sane client-provided one', async () => {
    const generated = await fetch(`${gateway.url}/health/live`);
    expect(generated.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const echoed = await fetch(`${gateway.url}/health/live`, {
      headers: { 'X-Request-Id': 'trace-42' },
    });
    expect(echoed.headers.get('x-request-id')).toBe('trace-42');
    const replaced = await fetch(`${gateway.url}/health/live`, {
      headers: { 'X-Request-Id': 'bad id with spaces' },
    });
    expect(replaced.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('goes 503 while Redis is down, stays live, and recovers when Redis returns', async () => {
    await redis.stop();
    const down = await ready();
    expect(down.status).toBe(503);
    expect(down.body.status).toBe('unavailable');
    expect(down.body.redis.status).toBe('down');
    expect((await fetch(`${gateway.url}/health/live`)).status).toBe(200);
    // An API request meanwhile is a 503 the client may retry, in OpenAI's error shape.
    const refused = await fetch(`${gateway.url}/v1/models`, {
      headers: { Authorization: `Bearer ${API_KEY}` },
    });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('5');
    expect(await refused.json()).toEqual({
      error: {
        message: 'The queue store (Redis) is unreachable; retry shortly.',
        type: 'service_unavailable',
        param: null,
        code: 'redis_unavailable',
      },
    });

    await redis.restart();
    // Neither the gateway nor the worker is restarted: both reconnect, and the worker's next
    // heartbeat re-registers it in the (empty, non-persistent) new Redis.
    await waitFor(
      async () => {
        const { status, body } = await ready();
        return status === 200 && body.workers.live === 1;
      },
      { timeoutMs: 15_000, message: 'readiness to recover with the worker re-registered' },
    );
    expect(worker.child.exitCode).toBeNull();
    expect(gateway.service.child.exitCode).toBeNull();
  });
});
