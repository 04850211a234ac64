import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { RedisTarget } from '#config';
import type { Logger } from './logger.js';

/**
 * A connection as every store, queue and script here uses it: one server or a sentinel-managed
 * primary (both `Redis`), or a Redis Cluster. The two share their command methods (ioredis's
 * Commander), and BullMQ takes either.
 */
export type RedisClient = Redis | Cluster;

/**
 * The one place Redis clients are created (ioredis, the client BullMQ uses).
 *
 * `purpose` decides how a client behaves while Redis is down:
 * - `queue`: a client for BullMQ (queues, workers, flows) and for work that must survive a short
 *   outage: its commands wait in an offline queue for the reconnection and are retried without
 *   limit (BullMQ requires `maxRetriesPerRequest: null`);
 * - `commands`: an app's main command client (request-path reads and writes, health checks,
 *   heartbeats, blocking stream reads): no offline queue and no retries, so while Redis is down
 *   its commands fail at once and callers report the outage (503, not ready) instead of hanging;
 * - `probe`: one connection attempt and no reconnection (the worker image's healthcheck): a failed
 *   check simply fails, and the next one runs at its interval.
 */
export type RedisPurpose = 'queue' | 'commands' | 'probe';

/** Reconnect quickly but not in a tight loop: 50 ms, 100 ms, … capped at 1 s. */
const reconnectDelayMs = (attempt: number): number => Math.min(attempt * 50, 1000);

/** A probe's one attempt, within Docker's 5 s check timeout. @defaultValue 3000 ms */
const PROBE_CONNECT_TIMEOUT_MS = 3000;

/**
 * How a `queue` client of a Redis Cluster waits out a failover: while a shard's primary is dead
 * and until its replica is promoted (the node timeout, 15 s by default, plus an election), its
 * commands fail with "Connection is closed.", CLUSTERDOWN, or MOVED to the dead node; ioredis
 * sends each again after a delay, but by default only 16 times (a second or two), then fails it.
 * These clients retry without limit, as they do while a single Redis is down, every 100 ms
 * (MOVED too, so that a stale slot table does not bounce commands in a tight loop).
 */
const CLUSTER_FAILOVER_WAIT = {
  maxRedirections: Number.POSITIVE_INFINITY,
  retryDelayOnFailover: 100,
  retryDelayOnClusterDown: 100,
  retryDelayOnMoved: 100,
} as const;

/** A bare URL stands for the single-server mode (tests and benchmarks start one server). */
const targetOf = (target: RedisTarget | string): RedisTarget =>
  typeof target === 'string' ? { mode: 'single', url: target } : target;

export function createRedis(
  redisTarget: RedisTarget | string,
  purpose: RedisPurpose,
  connectionName: string,
  logger: Logger,
): RedisClient {
  const target = targetOf(redisTarget);
  const retryStrategy = purpose === 'probe' ? () => null : reconnectDelayMs;
  const options: RedisOptions = {
    connectionName,
    lazyConnect: true,
    retryStrategy,
    maxRetriesPerRequest: purpose === 'queue' ? null : 0,
    enableOfflineQueue: purpose === 'queue',
    ...(purpose === 'probe' ? { connectTimeout: PROBE_CONNECT_TIMEOUT_MS } : {}),
  };
  let redis: RedisClient;
  switch (target.mode) {
    case 'single':
      redis = new Redis(target.url, options);
      break;
    case 'sentinel':
      // ioredis asks the sentinels for the primary at every (re)connection, so after a failover
      // the same client reconnects to the promoted replica; a demoted primary closes its clients.
      redis = new Redis({
        ...options,
        sentinels: target.sentinels,
        name: target.name,
        password: target.password,
        sentinelPassword: target.sentinelPassword,
        sentinelRetryStrategy: retryStrategy,
      });
      break;
    case 'cluster':
      // BullMQ reads `redisOptions.maxRetriesPerRequest` of a Cluster and requires null.
      redis = new Cluster(target.nodes, {
        lazyConnect: true,
        enableOfflineQueue: options.enableOfflineQueue,
        clusterRetryStrategy: retryStrategy,
        ...(purpose === 'queue' ? CLUSTER_FAILOVER_WAIT : {}),
        redisOptions: { ...options, password: target.password },
      });
      break;
  }
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

/** Where a target points, without passwords, for messages and logs. */
export function describeRedisTarget(target: RedisTarget): string {
  const list = (nodes: readonly { host: string; port: number }[]) =>
    nodes.map(({ host, port }) => `${host.includes(':') ? `[${host}]` : host}:${port}`).join(',');
  switch (target.mode) {
    case 'single':
      return redactRedisUrl(target.url);
    case 'sentinel':
      return `the primary "${target.name}" of sentinels ${list(target.sentinels)}`;
    case 'cluster':
      return `the Redis Cluster of ${list(target.nodes)}`;
  }
}

/** What to check when a target cannot be reached, naming its variables. */
const unreachableAdvice: Record<RedisTarget['mode'], string> = {
  single: 'Start redis-server or set REDIS_URL to a running Redis (e.g. redis://127.0.0.1:6379).',
  sentinel:
    'Check REDIS_SENTINELS (reachable sentinels), REDIS_SENTINEL_NAME (the name they monitor) ' +
    'and the passwords (REDIS_PASSWORD, REDIS_SENTINEL_PASSWORD).',
  cluster:
    'Check REDIS_CLUSTER_NODES (reachable nodes of a cluster whose slots are all covered) and ' +
    'REDIS_PASSWORD.',
};

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
  redis: RedisClient,
  redisTarget: RedisTarget | string,
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
    const target = targetOf(redisTarget);
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `Redis is unreachable at ${describeRedisTarget(target)} (${reason}). ` +
        unreachableAdvice[target.mode],
      { cause: error },
    );
  } finally {
    clearTimeout(timer);
  }
}
