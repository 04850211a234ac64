import type { RedisClient } from '#cluster';
import type { RedisKeys, WorkerRecord } from '#contracts';
import { listLiveWorkers } from '#cluster';

/** A probe that takes longer than this counts as Redis being down. @defaultValue 1000 ms */
const REDIS_PROBE_TIMEOUT_MS = 1000;

export interface ReadinessReport {
  status: 'ready' | 'unavailable';
  redis: { status: 'up' | 'down'; latencyMs?: number; error?: string };
  workers: { live: number; list: WorkerRecord[] };
}

/**
 * Whether the gateway can accept and queue work: Redis answers (even with no worker live, jobs
 * wait in their queue). The live workers are listed for operators, read fresh on every probe.
 */
export class Readiness {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
  ) {}

  async check(): Promise<ReadinessReport> {
    const started = performance.now();
    try {
      const workers = await withTimeout(listLiveWorkers(this.redis, this.keys));
      return {
        status: 'ready',
        redis: { status: 'up', latencyMs: Math.round(performance.now() - started) },
        workers: { live: workers.length, list: workers },
      };
    } catch (error) {
      return {
        status: 'unavailable',
        redis: { status: 'down', error: error instanceof Error ? error.message : String(error) },
        workers: { live: 0, list: [] },
      };
    }
  }
}

async function withTimeout<T>(work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => {
          reject(new Error(`Redis did not answer within ${REDIS_PROBE_TIMEOUT_MS} ms`));
        }, REDIS_PROBE_TIMEOUT_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
