/**
 * The Redis key layout shared by every process of the cluster. All keys live under one prefix so
 * that several clusters (or test runs) can share a Redis server without seeing each other.
 * BullMQ's own keys use the same prefix (`{prefix}:{queue}:…`).
 *
 * @defaultValue prefix `dijiang` (`QUEUE_PREFIX`)
 */
export interface RedisKeys {
  /** Set of worker ids that have registered; entries whose record expired are pruned on read. */
  readonly workerIndex: string;
  /** The worker's record (JSON {@link WorkerRecord}); expires unless its heartbeat renews it. */
  worker(workerId: string): string;
}

export function redisKeys(prefix: string): RedisKeys {
  return {
    workerIndex: `${prefix}:workers`,
    worker: (workerId) => `${prefix}:worker:${workerId}`,
  };
}
