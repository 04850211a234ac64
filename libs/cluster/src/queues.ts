import type { DefaultJobOptions, QueueOptions, WorkerOptions } from 'bullmq';
import type { RedisClient } from './redis.js';

/**
 * BullMQ timing, set in one place (DESIGN.md decision 6). Every worker of a queue must use the
 * same values: the stalled-job check is throttled through a key shared by all of them. A worker
 * that dies stops renewing its job locks; after `lockDurationMs` the next stalled check (every
 * `stalledIntervalMs`) moves its jobs back to the queue, so another worker resumes them within
 * about 10 s instead of BullMQ's default 30-60 s.
 */
export const QueueTiming = {
  /** @defaultValue 8000 ms; renewed every lockDuration / 2 while the job runs. */
  lockDurationMs: 8000,
  /** @defaultValue 2000 ms */
  stalledIntervalMs: 2000,
  /** A job may lose its worker this many times before it fails. @defaultValue 5 */
  maxStalledCount: 5,
} as const;

/** Retries for transient failures; bad input fails at once (UnrecoverableError). */
export const defaultJobOptions: DefaultJobOptions = {
  attempts: 3,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: { age: 24 * 3600, count: 100_000 },
  removeOnFail: { age: 7 * 24 * 3600 },
};

export function queueOptions(connection: RedisClient, prefix: string): QueueOptions {
  return { connection, prefix, defaultJobOptions };
}

export function workerOptions(
  connection: RedisClient,
  prefix: string,
  concurrency: number,
): WorkerOptions {
  return {
    connection,
    prefix,
    concurrency,
    lockDuration: QueueTiming.lockDurationMs,
    stalledInterval: QueueTiming.stalledIntervalMs,
    maxStalledCount: QueueTiming.maxStalledCount,
  };
}
