import type { RedisClient } from './redis.js';
import type { RedisKeys } from '#contracts';

/** How long a cancellation flag outlives the request. @defaultValue 24 h */
const CANCEL_FLAG_TTL_SECONDS = 24 * 3600;

/**
 * Asks whichever worker holds `jobId` to stop it. The flag covers a job that is still queued or
 * is picked up later (a worker checks it before starting); the announcement reaches a worker that
 * is running it now, within one engine tick.
 */
export async function requestCancel(
  redis: RedisClient,
  keys: RedisKeys,
  jobId: string,
): Promise<void> {
  await requestCancels(redis, keys, [jobId]);
}

/** {@link requestCancel} for many jobs in one round trip (a cancelled batch's lines). */
export async function requestCancels(
  redis: RedisClient,
  keys: RedisKeys,
  jobIds: readonly string[],
): Promise<void> {
  if (jobIds.length === 0) return;
  const transaction = redis.multi();
  for (const jobId of jobIds) {
    transaction
      .set(keys.cancelFlag(jobId), '1', 'EX', CANCEL_FLAG_TTL_SECONDS)
      .publish(keys.cancelChannel, jobId);
  }
  await transaction.exec();
}

export async function isCancelRequested(
  redis: RedisClient,
  keys: RedisKeys,
  jobId: string,
): Promise<boolean> {
  return (await redis.exists(keys.cancelFlag(jobId))) === 1;
}

/**
 * Listens for cancellation announcements on a dedicated subscriber connection (a Redis
 * connection in subscribe mode cannot run other commands).
 */
export async function subscribeToCancellations(
  subscriber: RedisClient,
  keys: RedisKeys,
  onCancel: (jobId: string) => void,
): Promise<void> {
  subscriber.on('message', (channel: string, jobId: string) => {
    if (channel === keys.cancelChannel) onCancel(jobId);
  });
  await subscriber.subscribe(keys.cancelChannel);
}
