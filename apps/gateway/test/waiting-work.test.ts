import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  JobName,
  JobPriority,
  jobPayloadSchemas,
  modelQueueName,
  redisKeys,
  type JobPayloadInput,
} from '#contracts';
import { queueOptions, workerOptions } from '#cluster';
import { TestRedis, uniquePrefix } from '#testing';
import { WaitingWork } from '../src/metrics/waiting-work.js';

/**
 * The waiting-work reading against a private Redis (its command counters must count only this
 * file's commands). Every expected figure is worked out by hand from the payloads below.
 */
describe('WaitingWork (real Redis)', () => {
  let server: TestRedis;
  let redis: Redis;
  const prefix = uniquePrefix('waiting-work');
  const keys = redisKeys(prefix);
  const queues: Queue[] = [];

  const queueOf = (model: string): Queue => {
    const queue = new Queue(modelQueueName(model), queueOptions(redis, prefix));
    queues.push(queue);
    return queue;
  };
  const add = async <N extends JobName>(
    queue: Queue,
    name: N,
    payload: JobPayloadInput<N>,
    priority: JobPriority = JobPriority.Interactive,
    options: { delay?: number } = {},
  ) => queue.add(name, jobPayloadSchemas[name].parse(payload), { priority, ...options });
  /** Calls of one Redis command since the server started. */
  const calls = async (command: string): Promise<number> => {
    const stats = await redis.info('commandstats');
    return Number(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(stats)?.[1] ?? 0);
  };

  beforeAll(async () => {
    server = await TestRedis.start();
    redis = new Redis(server.url, { maxRetriesPerRequest: null });
  });
  afterAll(async () => {
    await Promise.all(queues.map((queue) => queue.close()));
    await redis.quit();
    await server.stop();
  });

  it('adds up input bytes and the most output tokens of the jobs waiting, per queue', async () => {
    const queue = queueOf('m-sum');
    const owner = 'alice';
    // 'café ☃': c, a, f (1 byte each), é (2), space (1), ☃ (3) = 9 bytes; 16 tokens by default.
    await add(queue, JobName.Generate, {
      model: 'm-sum',
      owner,
      input: { text: 'café ☃' },
      sampling: {},
    });
    // 3 choices of at most 20 tokens: 60; 'abc' = 3 bytes.
    await add(queue, JobName.Generate, {
      model: 'm-sum',
      owner,
      input: { text: 'abc' },
      sampling: { max_tokens: 20 },
      n: 3,
    });
    // A document of 10,000 bytes, scored: input only.
    await redis.set(keys.document('doc_1'), 'x'.repeat(10_000));
    await add(
      queue,
      JobName.Score,
      { model: 'm-sum', owner, input: { documentId: 'doc_1' } },
      JobPriority.Document,
    );
    // A digest of 5 inline bytes, queued at batch priority.
    await add(
      queue,
      JobName.Digest,
      { model: 'm-sum', owner, input: { text: 'hello' } },
      JobPriority.Batch,
    );
    // Not waiting for a worker: a delayed retry is not counted until it waits again.
    await add(
      queue,
      JobName.Generate,
      { model: 'm-sum', owner, input: { text: 'later' }, sampling: { max_tokens: 999 } },
      JobPriority.Interactive,
      { delay: 60_000 },
    );
    // Another producer's job that no worker would accept: a waiting job, but no work.
    await queue.add('translate', { text: 'ignored' }, { priority: JobPriority.Interactive });
    // Another model's queue is read on its own.
    const other = queueOf('m-other');
    await add(other, JobName.Generate, {
      model: 'm-other',
      owner,
      input: { text: 'zz' },
      sampling: { max_tokens: 7 },
    });

    const work = new WaitingWork(redis, keys);
    expect(await work.read(queue)).toEqual({
      jobs: 5,
      read: 5,
      inputBytes: 9 + 3 + 10_000 + 5,
      outputTokens: 16 + 60,
    });
    expect(await work.read(other)).toEqual({ jobs: 1, read: 1, inputBytes: 2, outputTokens: 7 });
  });

  it('reads a job once while it waits, and drops it once a worker takes it', async () => {
    const queue = queueOf('m-take');
    for (const maxTokens of [10, 20, 30]) {
      await add(queue, JobName.Generate, {
        model: 'm-take',
        owner: 'bob',
        input: { text: 'abcd' },
        sampling: { max_tokens: maxTokens },
      });
    }
    const work = new WaitingWork(redis, keys);
    const hmgetBefore = await calls('hmget');
    expect(await work.read(queue)).toMatchObject({ jobs: 3, inputBytes: 12, outputTokens: 60 });
    const hmgetFirst = await calls('hmget');
    expect(hmgetFirst - hmgetBefore).toBe(3);
    expect(await work.read(queue)).toMatchObject({ jobs: 3, inputBytes: 12, outputTokens: 60 });
    // The second scrape read no job: their work was remembered.
    expect((await calls('hmget')) - hmgetFirst).toBe(0);

    // A real BullMQ worker takes the first job (FIFO within one priority: max_tokens 10).
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let started: () => void = () => undefined;
    const taken = new Promise<void>((resolve) => {
      started = resolve;
    });
    const connection = new Redis(server.url, { maxRetriesPerRequest: null });
    const worker = new Worker(
      queue.name,
      async () => {
        started();
        await held;
      },
      workerOptions(connection, prefix, 1),
    );
    try {
      await taken;
      expect(await work.read(queue)).toEqual({
        jobs: 2,
        read: 2,
        inputBytes: 8,
        outputTokens: 50,
      });
    } finally {
      release();
      await worker.close();
      await connection.quit();
    }
  });

  it('reads at most its limit per state and extrapolates from the jobs that run first', async () => {
    const queue = queueOf('m-many');
    // Six interactive jobs of 10 tokens run before four batch jobs of 100 tokens.
    for (let index = 0; index < 6; index += 1) {
      await add(queue, JobName.Generate, {
        model: 'm-many',
        owner: 'carol',
        input: { text: 'ab' },
        sampling: { max_tokens: 10 },
      });
    }
    for (let index = 0; index < 4; index += 1) {
      await add(
        queue,
        JobName.Generate,
        { model: 'm-many', owner: 'carol', input: { text: 'ab' }, sampling: { max_tokens: 100 } },
        JobPriority.Batch,
      );
    }
    const hmgetBefore = await calls('hmget');
    // The four read are interactive: 40 tokens and 8 bytes, scaled by 10 jobs / 4 read.
    expect(await new WaitingWork(redis, keys, 4).read(queue)).toEqual({
      jobs: 10,
      read: 4,
      inputBytes: 20,
      outputTokens: 100,
    });
    expect((await calls('hmget')) - hmgetBefore).toBe(4);
    // Unbounded, the same queue reads exactly.
    expect(await new WaitingWork(redis, keys).read(queue)).toEqual({
      jobs: 10,
      read: 10,
      inputBytes: 20,
      outputTokens: 460,
    });
  });

  it('adds up every job across its read round trips', async () => {
    const queue = queueOf('m-chunks');
    // 120 jobs (more than one round trip reads) of 1, 2, … 120 tokens: 120 × 121 / 2 = 7260.
    await queue.addBulk(
      Array.from({ length: 120 }, (_, index) => ({
        name: JobName.Generate,
        data: jobPayloadSchemas[JobName.Generate].parse({
          model: 'm-chunks',
          owner: 'dave',
          input: { text: 'x' },
          sampling: { max_tokens: index + 1 },
        }),
        opts: { priority: JobPriority.Batch },
      })),
    );
    expect(await new WaitingWork(redis, keys).read(queue)).toEqual({
      jobs: 120,
      read: 120,
      inputBytes: 120,
      outputTokens: 7260,
    });
  });
});
