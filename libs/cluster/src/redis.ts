import { Redis } from 'ioredis';
import type { Logger } from './logger.js';

/**
 * The one place Redis clients are created (ioredis, the client BullMQ uses).
 *
 * `purpose` decides how a client behaves while Redis is down:
 * - `queue`: a client for BullMQ (queues, workers, flows) and for work that must survive a short
 *   outage: its commands wait in an offline queue for the reconnection and are retried without
 *   limit (BullMQ requires `maxRetriesPerRequest: null`);
 * - `commands`: an app's main command client (request-path reads and writes, health checks,
 *   heartbeats, blocking stream reads): no offline queue and no retries, so while Redis is down
 *   its commands fail at once and callers report the outage (503, not ready) instead of hanging.
 */
export type RedisPurpose = 'queue' | 'commands';

/** Reconnect quickly but not in a tight loop: 50 ms, 100 ms, … capped at 1 s. */
const reconnectDelayMs = (attempt: number): number => Math.min(attempt * 50, 1000);

export function createRedis(
  url: string,
  purpose: RedisPurpose,
  connectionName: string,
  logger: Logger,
): Redis {
  const redis = new Redis(url, {
    connectionName,
    lazyConnect: true,
    retryStrategy: reconnectDelayMs,
    maxRetriesPerRequest: purpose === 'queue' ? null : 0,
    enableOfflineQueue: purpose === 'queue',
  });
  // One line when the connection drops and one when it is back, not one per reconnect attempt
  // (ioredis prints every error of a client that has no listener).
  let down = false;
  redis.on('error', (error: Error) => {
    if (down) return;
    down = true;
    logger.warn({ err: error, connection: connectionName }, 'Redis connection lost; reconnecting');
  });
  redis.on('ready', () => {
    if (!down) return;
    down = false;
    logger.info({ connection: connectionName }, 'Redis connection restored');
  });
  return redis;
}

/** The URL without its password, for messages and logs. */
export function redactRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable REDIS_URL)';
  }
}

/**
 * Connects at boot and fails with an actionable message when Redis cannot be reached, instead of
 * retrying forever in the background.
 */
export async function connectRedisOrFail(
  redis: Redis,
  url: string,
  timeoutMs = 5000,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    if (redis.status === 'wait') await Promise.race([redis.connect(), deadline]);
    await Promise.race([redis.ping(), deadline]);
  } catch (error) {
    redis.disconnect();
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `Redis is unreachable at ${redactRedisUrl(url)} (${reason}). Start redis-server or set ` +
        'REDIS_URL to a running Redis (e.g. redis://127.0.0.1:6379).',
      { cause: error },
    );
  } finally {
    clearTimeout(timer);
  }
}
