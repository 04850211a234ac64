import { resolve } from 'node:path';
import type { ManagedRedisShape } from '#config';
import { freePort, RedisSentinelSet, startRedisServer, type ServiceProcess } from '#processes';

/**
 * The Redis `dijiang up` starts when none is given: one redis-server, or a Sentinel set (a
 * primary, a replica and three sentinels). Both persist every write (AOF) under DATA_DIR and keep
 * it across runs, as production Redis should.
 */
export interface ManagedRedis {
  /** How every child reaches it: `REDIS_URL`, or `REDIS_SENTINELS` + `REDIS_SENTINEL_NAME`. */
  readonly env: Record<string, string>;
  readonly services: readonly ServiceProcess[];
  /**
   * Whether the cluster carries on when one of `services` exits: with Sentinel the replica is
   * promoted when the primary dies; a single server has no such stand-in.
   */
  readonly survivesOneLoss: boolean;
  /** Where it is, for the banner. */
  readonly description: string;
  stop(): Promise<void>;
}

/** The primary's name in the managed sentinels' configuration. */
export const MANAGED_SENTINEL_NAME = 'dijiang';

/** How long a graceful stop may take before SIGKILL. @defaultValue 10000 ms */
const STOP_GRACE_MS = 10_000;

export async function startManagedRedis(
  shape: ManagedRedisShape,
  dataDir: string,
  log: (message: string) => void,
): Promise<ManagedRedis> {
  switch (shape) {
    case 'single': {
      const redis = await startRedisServer({
        port: await freePort(),
        dir: resolve(dataDir, 'redis'),
        appendOnly: true,
        detached: true,
      });
      log(`managed redis-server on ${redis.url} (pid ${redis.pid}, data in ${dataDir}/redis)`);
      return {
        env: { REDIS_URL: redis.url },
        services: [{ ...redis, name: 'redis' }],
        survivesOneLoss: false,
        description: `${redis.url} (managed; data in ${dataDir}/redis)`,
        stop: async () => {
          await redis.stop('SIGTERM', STOP_GRACE_MS);
        },
      };
    }
    case 'sentinel': {
      const set = await RedisSentinelSet.start({
        dir: resolve(dataDir, 'redis-sentinel'),
        masterName: MANAGED_SENTINEL_NAME,
        appendOnly: true,
        // Local processes answer within milliseconds: 5 s of silence is a dead primary, and a
        // failover is over in seconds instead of Redis's default 30 s + 3 min.
        downAfterMs: 5000,
        failoverTimeoutMs: 10_000,
        detached: true,
      });
      const where =
        `primary 127.0.0.1:${set.primary.port}, replica 127.0.0.1:${set.replica.port}, ` +
        `sentinels ${set.sentinelAddresses}`;
      log(
        `managed Redis Sentinel "${MANAGED_SENTINEL_NAME}": ${where} ` +
          `(data in ${dataDir}/redis-sentinel)`,
      );
      return {
        env: {
          REDIS_SENTINELS: set.sentinelAddresses,
          REDIS_SENTINEL_NAME: MANAGED_SENTINEL_NAME,
        },
        services: set.services.map((service) => ({ ...service, name: `redis ${service.name}` })),
        survivesOneLoss: true,
        description:
          `Sentinel "${MANAGED_SENTINEL_NAME}" at ${set.sentinelAddresses} ` +
          `(managed: primary :${set.primary.port}, replica :${set.replica.port}; ` +
          `data in ${dataDir}/redis-sentinel)`,
        stop: () => set.stop('SIGTERM', STOP_GRACE_MS),
      };
    }
  }
}
