import { Job, Queue, type JobsOptions } from 'bullmq';
import type { JobName } from '#contracts';
import {
  decodeStreamEvent,
  gatewayKeys,
  modelQueueName,
  RATE_LIMIT_WINDOW_MS,
  redisKeys,
  type JobPayloadInput,
  type StreamEvent,
} from '#contracts';
import { createLogger, createRedis, queueOptions, type RedisClient } from '#cluster';
import type { RedisTarget } from '#config';
import { waitFor } from '../support/wait.js';

/** A producer for worker tests: adds jobs straight to BullMQ, as the gateway does. */
export class TestProducer {
  readonly redis: RedisClient;
  private readonly queues = new Map<string, Queue>();

  constructor(
    redis: string | RedisTarget,
    readonly prefix: string,
  ) {
    this.redis = createRedis(
      redis,
      'queue',
      'test-producer',
      createLogger('test-producer', 'silent'),
    );
  }

  queue(model: string): Queue {
    const existing = this.queues.get(model);
    if (existing) return existing;
    const queue = new Queue(modelQueueName(model), queueOptions(this.redis, this.prefix));
    this.queues.set(model, queue);
    return queue;
  }

  async add<N extends JobName>(
    name: N,
    data: JobPayloadInput<N>,
    options: JobsOptions & { jobId: string },
  ): Promise<Job> {
    return this.queue(data.model).add(name, data, options);
  }

  /** Waits for the job to complete and returns its result (fails on a failed job). */
  async result(model: string, jobId: string, timeoutMs = 60_000): Promise<unknown> {
    let job: Job | undefined;
    await waitFor(
      async () => {
        job = await Job.fromId(this.queue(model), jobId);
        const state = await job?.getState();
        if (state === 'failed') throw new Error(`job ${jobId} failed: ${job?.failedReason}`);
        return state === 'completed';
      },
      { timeoutMs, message: `job ${jobId} to complete` },
    );
    // Read again: the job may have completed between the read above and its state check.
    job = await Job.fromId(this.queue(model), jobId);
    return job?.returnvalue;
  }

  /** Every event of the job's stream, raw (no de-duplication). */
  async stream(jobId: string): Promise<StreamEvent[]> {
    const entries = await this.redis.xrange(redisKeys(this.prefix).jobStream(jobId), '-', '+');
    return entries.map(([, fields]) => decodeStreamEvent(fields));
  }

  /** Tokens charged to a tenant in the current and previous rate-limit windows. */
  async chargedTokens(tenant: string): Promise<number> {
    const window = Math.floor(Date.now() / RATE_LIMIT_WINDOW_MS);
    const keys = gatewayKeys(this.prefix);
    const counts = await this.redis.mget(
      keys.rateLimit(tenant, 'tokens', window - 1),
      keys.rateLimit(tenant, 'tokens', window),
    );
    return counts.reduce((sum, count) => sum + Number(count ?? 0), 0);
  }

  async tokenCount(jobId: string): Promise<number> {
    return (await this.stream(jobId)).filter((event) => event.type === 'token').length;
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((queue) => queue.close()));
    await this.redis.quit();
  }
}

/** Token indexes per choice in stream order, to check "every index exactly once". */
export function indexesByChoice(events: readonly StreamEvent[]): Map<number, number[]> {
  const result = new Map<number, number[]>();
  for (const event of events) {
    if (event.type !== 'token') continue;
    result.set(event.choice, [...(result.get(event.choice) ?? []), event.index]);
  }
  return result;
}

export function generatePayload(
  text: string,
  sampling: JobPayloadInput<'generate'>['sampling'],
  extra: Partial<JobPayloadInput<'generate'>> = {},
): JobPayloadInput<'generate'> {
  return { model: 'tiny-dijiang', owner: 'tenant-test', input: { text }, sampling, ...extra };
}
