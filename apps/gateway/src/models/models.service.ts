import type { RedisClient } from '#cluster';
import type { GatewayKeys, RedisKeys, WorkerRecord } from '#contracts';
import { listLiveWorkers } from '#cluster';
import { modelNotFound, unavailable } from '../common/api-error.js';

/** Live workers are listed at most this often per gateway. @defaultValue 500 ms */
const LIVE_CACHE_MS = 500;
/** How often a request waiting for a worker looks again. @defaultValue 200 ms */
const WAIT_POLL_MS = 200;

export interface ServedModel {
  id: string;
  /** Unix seconds: when the longest-running worker serving it started. */
  created: number;
  workers: number;
}

/**
 * Which models exist. A model is served when a live worker advertises it in the registry; it
 * stays *known* for MODEL_MEMORY_MS after the last such worker was seen (a restart, a crash), so
 * requests for it wait for a worker (then 503) instead of failing with `model_not_found`.
 */
export class ModelsService {
  private cache: { at: number; workers: Promise<WorkerRecord[]> } | undefined;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly gateway: GatewayKeys,
    private readonly memoryMs: number,
    private readonly workerWaitMs: number,
  ) {}

  async liveWorkers(): Promise<WorkerRecord[]> {
    const now = Date.now();
    if (this.cache === undefined || now - this.cache.at > LIVE_CACHE_MS) {
      const workers = this.listAndRemember();
      this.cache = { at: now, workers };
      workers.catch(() => {
        this.cache = undefined;
      });
    }
    return this.cache.workers;
  }

  private async listAndRemember(): Promise<WorkerRecord[]> {
    const workers = await listLiveWorkers(this.redis, this.keys);
    const models = new Set(workers.flatMap((worker) => worker.models));
    if (models.size > 0) {
      const now = Date.now();
      await this.redis.zadd(this.gateway.modelsSeen, ...[...models].flatMap((id) => [now, id]));
    }
    return workers;
  }

  async served(): Promise<ServedModel[]> {
    const byModel = new Map<string, ServedModel>();
    for (const worker of await this.liveWorkers()) {
      const started = Math.floor(Date.parse(worker.startedAt) / 1000);
      for (const id of worker.models) {
        const entry = byModel.get(id);
        if (entry === undefined) byModel.set(id, { id, created: started, workers: 1 });
        else
          byModel.set(id, {
            id,
            created: Math.min(entry.created, started),
            workers: entry.workers + 1,
          });
      }
    }
    return [...byModel.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Every model served now or seen within MODEL_MEMORY_MS: those {@link assertKnown} accepts. */
  async known(): Promise<string[]> {
    const served = (await this.liveWorkers()).flatMap((worker) => worker.models);
    const seen = await this.redis.zrangebyscore(
      this.gateway.modelsSeen,
      Date.now() - this.memoryMs,
      '+inf',
    );
    return [...new Set([...served, ...seen])].sort();
  }

  private async isServed(model: string): Promise<boolean> {
    return (await this.liveWorkers()).some((worker) => worker.models.includes(model));
  }

  /** Throws `model_not_found` unless the model is served or was served recently. */
  async assertKnown(model: string): Promise<void> {
    if (await this.isServed(model)) return;
    const lastSeen = await this.redis.zscore(this.gateway.modelsSeen, model);
    if (lastSeen === null || Date.now() - Number(lastSeen) > this.memoryMs) {
      throw modelNotFound(model);
    }
  }

  /**
   * For synchronous requests: the model must be known, and a live worker must serve it within
   * WORKER_WAIT_MS, else 503 (the request would otherwise hang on a queue nobody consumes).
   */
  async awaitWorker(model: string, signal?: AbortSignal): Promise<void> {
    await this.assertKnown(model);
    const deadline = Date.now() + this.workerWaitMs;
    while (!(await this.isServed(model))) {
      if (Date.now() >= deadline || signal?.aborted === true) {
        throw unavailable(
          `No live worker serves the model '${model}' right now (waited ` +
            `${this.workerWaitMs} ms); retry later.`,
          'no_live_worker',
        );
      }
      await new Promise((resolve) => setTimeout(resolve, WAIT_POLL_MS));
    }
  }
}
