import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { gatewayKeys, redisKeys } from '#contracts';
import { deletePrefix, uniquePrefix } from '#testing';
import { JobQueues } from '../src/jobs/job-queues.js';

describe('JobQueues records (real Redis)', () => {
  let redis: Redis;
  let queues: JobQueues;
  const prefix = uniquePrefix('job-records');

  beforeAll(() => {
    redis = new Redis(inject('redisUrl'));
    queues = new JobQueues(redis, redis, redisKeys(prefix), gatewayKeys(prefix), 10);
  });
  afterAll(async () => {
    await queues.onApplicationShutdown();
    await deletePrefix(redis, prefix);
    await redis.quit();
  });

  it('stores flags as 1/0 hash fields and reads them back as booleans', async () => {
    const record = {
      owner: 'alice',
      kind: 'chat',
      type: 'generate',
      model: 'm',
      created: 1,
    } as const;
    await queues.writeRecord('cmpl-1', { ...record, includeUsage: true, logprobs: false });
    expect(await redis.hgetall(gatewayKeys(prefix).gatewayJob('cmpl-1'))).toMatchObject({
      includeUsage: '1',
      logprobs: '0',
    });
    expect(await queues.record('cmpl-1', 'alice')).toMatchObject({
      includeUsage: true,
      logprobs: false,
      choices: 1,
    });
    // Fields left out are written with their defaults.
    await queues.writeRecord('job_2', { ...record, kind: 'job' });
    expect(await queues.record('job_2', 'alice')).toMatchObject({
      includeUsage: false,
      logprobs: false,
      maxOutputTokens: 0,
    });
  });
});
