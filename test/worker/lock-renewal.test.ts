import { Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { JobName, modelQueueName, redisKeys, type GenerateResult } from '#contracts';
import {
  CheckpointStore,
  createLogger,
  createRedis,
  PrefixCache,
  type RedisClient,
  workerOptions,
} from '#cluster';
import { Engine } from '#engine';
import { testModelDir, TEST_MODEL_ID, uniquePrefix } from '#testing';
import { JobRegistry } from '../../apps/worker/src/job-registry.js';
import { waitFor } from '../support/wait.js';
import { generatePayload, TestProducer } from './support.js';

/**
 * A failed lock renewal, as BullMQ reports it (job ids only), against the lock in Redis: a job
 * whose running attempt still holds its lock goes on (the failure was about an earlier attempt:
 * a renewal that waited out a Redis outage while the job was handed back and taken again);
 * a job whose lock is gone is abandoned and writes nothing more. The registry and a BullMQ
 * worker run in this process, on a real Redis.
 */

const MAX_TOKENS = 3000;
const seeded = { temperature: 0.8, seed: 5, logit_bias: { '256': -100 }, max_tokens: MAX_TOKENS };

describe('JobRegistry.abandon after a failed lock renewal', () => {
  const prefix = uniquePrefix('lock-renewal');
  let engine: Engine;
  let redis: RedisClient;
  let connection: RedisClient;
  let worker: Worker;
  let jobs: JobRegistry;
  let producer: TestProducer;
  const lockKeyOf = (jobId: string): string => worker.toKey(`${jobId}:lock`);

  beforeAll(async () => {
    const url = inject('redisUrl');
    const logger = createLogger('lock-renewal-test', 'silent');
    const keys = redisKeys(prefix);
    engine = await Engine.start({ bundleDir: testModelDir(), intraOpThreads: 1 });
    redis = createRedis(url, 'queue', 'lock-renewal-test', logger);
    connection = createRedis(url, 'queue', 'lock-renewal-test:bullmq', logger);
    jobs = new JobRegistry(
      redis,
      keys,
      new CheckpointStore(redis, keys),
      {
        checkpointEveryTokens: 64,
        checkpointEveryMs: 60_000,
        checkpointPrefillEveryTokens: 1024,
        prefixBlockTokens: 0,
      },
      { id: 'lock-renewal-test', host: 'localhost', pid: process.pid },
      logger,
    );
    const runtime = { engine, prefixCache: new PrefixCache(redis, keys, engine.modelId, 0, 1) };
    worker = new Worker(
      modelQueueName(TEST_MODEL_ID),
      async (job, lockToken) => jobs.process(job, lockToken, runtime),
      workerOptions(connection, prefix, 2),
    );
    // The abandoned job's attempt ends without its lock, which BullMQ reports: expected here.
    worker.on('error', () => undefined);
    producer = new TestProducer(url, prefix);
  }, 60_000);
  afterAll(async () => {
    await worker.close(true);
    await producer.close();
    await Promise.all([redis.quit(), connection.quit()]);
    await engine.close();
  });

  it('keeps a job whose attempt holds its lock, and abandons one whose lock is gone', async () => {
    for (const jobId of ['job-held', 'job-lost']) {
      await producer.add(JobName.Generate, generatePayload('Once', seeded), { jobId });
    }
    await waitFor(
      async () =>
        (await producer.tokenCount('job-held')) > 0 && (await producer.tokenCount('job-lost')) > 0,
      { message: 'both jobs streaming' },
    );

    // From here each job's outcome is its running attempt's: no attempt is started again.
    await worker.pause(true);
    await jobs.abandon(['job-held'], lockKeyOf);
    // The lock expires, or another worker takes the job: either way it is no longer this one's.
    await redis.del(lockKeyOf('job-lost'));
    await jobs.abandon(['job-lost'], lockKeyOf);

    const held = (await producer.result(TEST_MODEL_ID, 'job-held', 30_000)) as GenerateResult;
    expect(held.usage.completionTokens).toBe(MAX_TOKENS);
    await waitFor(() => jobs.activeJobs === 0, { message: 'the abandoned job to stop' });
    const lost = await producer.stream('job-lost');
    expect(lost.filter((event) => event.type === 'token').length).toBeLessThan(MAX_TOKENS);
    expect(lost.filter((event) => event.type !== 'token' && event.type !== 'progress')).toEqual([]);
  }, 60_000);
});
