import type { Queue } from 'bullmq';
import type { RedisClient } from '#cluster';
import { z } from 'zod';
import type { RedisKeys, WorkerRecord } from '#contracts';

/** Where `/admin/cluster` is served (admin keys only, like the queue dashboard). */
export const CLUSTER_PATH = '/admin/cluster';

const count = z.number().int().min(0);

/** What `GET /admin/cluster` answers: the cluster now, as the console's cluster page shows it. */
export const clusterBodySchema = z.object({
  object: z.literal('cluster'),
  /** Unix milliseconds of the reading: the console derives rates from two readings. */
  time: z.number().int(),
  workers: z.array(
    z.object({
      id: z.string(),
      host: z.string(),
      pid: z.number().int(),
      models: z.array(z.string()),
      capacity: z.number().int(),
      started_at: z.string(),
      heartbeat_at: z.string(),
    }),
  ),
  /** One entry per model queue: jobs waiting (priority order included), running, delayed. */
  queues: z.array(
    z.object({
      model: z.string(),
      waiting: count,
      active: count,
      delayed: count,
      completed: count,
      failed: count,
    }),
  ),
  /**
   * Prompt and output tokens of every job finished in the cluster (completions, chat, batch
   * lines, jobs, states), counted by the workers: a counter, whose rate is the throughput.
   */
  tokens_processed: count,
  /** The workers' shared prefix-state cache; `hit_rate` is null before the first lookup. */
  prefix_cache: z.object({
    hits: count,
    misses: count,
    bytes: count,
    evictions: count,
    hit_rate: z.number().min(0).max(1).nullable(),
  }),
});
export type ClusterBody = z.output<typeof clusterBodySchema>;

/** What the report reads, beside Redis: the live workers and a queue per model. */
export interface ClusterSources {
  liveWorkers(): Promise<WorkerRecord[]>;
  queue(model: string): Queue;
  /**
   * Models the cluster knows (served now or recently) and those this gateway has submitted to,
   * so every gateway replica reports the same queues.
   */
  knownModels(): Promise<Iterable<string>>;
}

/**
 * The cluster's state for operators, read fresh on every call: live workers from the registry,
 * each model queue's job counts from BullMQ, and the counters the workers keep in Redis (tokens
 * processed, prefix-cache hits and misses).
 */
export class ClusterReport {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly sources: ClusterSources,
  ) {}

  async read(): Promise<ClusterBody> {
    const workers = await this.sources.liveWorkers();
    const models = new Set([...workers.flatMap((worker) => worker.models)]);
    for (const model of await this.sources.knownModels()) models.add(model);
    const sorted = [...models].sort();
    const queues = await Promise.all(
      sorted.map(async (model) => {
        const counts = await this.sources
          .queue(model)
          .getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'completed', 'failed');
        return {
          model,
          waiting: (counts.waiting ?? 0) + (counts.prioritized ?? 0),
          active: counts.active ?? 0,
          delayed: counts.delayed ?? 0,
          completed: counts.completed ?? 0,
          failed: counts.failed ?? 0,
        };
      }),
    );
    const tokens = Number((await this.redis.get(this.keys.tokensProcessed)) ?? 0);
    const stats = await this.redis.hgetall(this.keys.prefixStats);
    const stat = (field: string): number => Number(stats[field] ?? 0);
    const lookups = stat('hits') + stat('misses');
    return {
      object: 'cluster',
      time: Date.now(),
      workers: workers.map((worker) => ({
        id: worker.id,
        host: worker.host,
        pid: worker.pid,
        models: worker.models,
        capacity: worker.capacity,
        started_at: worker.startedAt,
        heartbeat_at: worker.heartbeatAt,
      })),
      queues,
      tokens_processed: tokens,
      prefix_cache: {
        hits: stat('hits'),
        misses: stat('misses'),
        bytes: stat('bytes'),
        evictions: stat('evictions'),
        hit_rate: lookups === 0 ? null : stat('hits') / lookups,
      },
    };
  }
}
