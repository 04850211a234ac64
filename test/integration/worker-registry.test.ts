import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { redisKeys, type WorkerRecord } from '#contracts';
import { listLiveWorkers } from '#cluster';
import { type ServiceProcess } from '#processes';
import { deletePrefix, startWorker, TEST_MODEL_ID, uniquePrefix } from '#testing';
import { waitFor } from '../support/wait.js';

const TTL_MS = 2000;

describe('worker registry (real Redis, real worker processes)', () => {
  const redisUrl = inject('redisUrl');
  let redis: Redis;
  let prefix: string;
  const workers: ServiceProcess[] = [];

  const live = async (): Promise<WorkerRecord[]> => listLiveWorkers(redis, redisKeys(prefix));
  const spawnWorker = async (id: string, capacity = 4): Promise<ServiceProcess> => {
    const worker = await startWorker(redisUrl, {
      QUEUE_PREFIX: prefix,
      WORKER_ID: id,
      WORKER_TTL_MS: String(TTL_MS),
      WORKER_CAPACITY: String(capacity),
    });
    workers.push(worker);
    return worker;
  };

  beforeAll(async () => {
    redis = new Redis(redisUrl);
    await redis.ping();
  });
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((worker) => worker.stop('SIGKILL')));
    await deletePrefix(redis, prefix);
  });
  afterAll(async () => {
    await redis.quit();
  });

  it('registers id, host, pid, models, capacity and start time', async () => {
    prefix = uniquePrefix('registry');
    const before = Date.now();
    const worker = await spawnWorker('w-register', 6);
    const [record, ...others] = await live();
    expect(others).toEqual([]);
    expect(record).toMatchObject({
      id: 'w-register',
      pid: worker.pid,
      models: [TEST_MODEL_ID],
      capacity: 6,
    });
    expect(record?.host.length).toBeGreaterThan(0);
    expect(Date.parse(record?.startedAt ?? '')).toBeGreaterThanOrEqual(before - 1000);
  });

  it('keeps a live worker registered past its TTL through heartbeats', async () => {
    prefix = uniquePrefix('registry');
    await spawnWorker('w-beat');
    const first = (await live())[0]?.heartbeatAt;
    await new Promise((resolve) => setTimeout(resolve, TTL_MS * 2));
    const [record] = await live();
    expect(record?.id).toBe('w-beat');
    expect(Date.parse(record?.heartbeatAt ?? '')).toBeGreaterThan(Date.parse(first ?? ''));
  });

  it('forgets a SIGKILLed worker once its TTL passes', async () => {
    prefix = uniquePrefix('registry');
    const doomed = await spawnWorker('w-doomed');
    await spawnWorker('w-survivor');
    expect((await live()).map((worker) => worker.id)).toEqual(['w-doomed', 'w-survivor']);
    await doomed.stop('SIGKILL');
    await waitFor(async () => (await live()).length === 1, {
      timeoutMs: TTL_MS * 3,
      message: 'the killed worker to expire',
    });
    expect((await live()).map((worker) => worker.id)).toEqual(['w-survivor']);
    // The index entry of the dead worker was pruned, not only hidden.
    expect(await redis.smembers(redisKeys(prefix).workerIndex)).toEqual(['w-survivor']);
  });

  it('deregisters at once on SIGTERM', async () => {
    prefix = uniquePrefix('registry');
    const worker = await spawnWorker('w-clean');
    expect(await live()).toHaveLength(1);
    const exit = await worker.stop('SIGTERM');
    expect(exit).toEqual({ code: 0, signal: null });
    expect(await live()).toEqual([]);
    expect(await redis.exists(redisKeys(prefix).worker('w-clean'))).toBe(0);
  });
});
