import { Controller, Get, HttpStatus, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import type { Redis } from 'ioredis';
import type { RedisKeys, WorkerRecord } from '#contracts';
import { listLiveWorkers } from '#cluster';
import { PROBE_REDIS, REDIS_KEYS } from '../tokens.js';

/** A probe that takes longer than this counts as Redis being down. @defaultValue 1000 ms */
const REDIS_PROBE_TIMEOUT_MS = 1000;

export interface ReadinessReport {
  status: 'ready' | 'unavailable';
  redis: { status: 'up' | 'down'; latencyMs?: number; error?: string };
  workers: { live: number; list: WorkerRecord[] };
}

@Controller('health')
export class HealthController {
  constructor(
    @Inject(PROBE_REDIS) private readonly redis: Redis,
    @Inject(REDIS_KEYS) private readonly keys: RedisKeys,
  ) {}

  /** Process liveness only: answers while the event loop runs, whatever Redis does. */
  @Get('live')
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /**
   * Ready when Redis answers: the gateway can then accept and queue work, even with no worker
   * live (jobs wait in their queue). The live workers are listed for operators.
   */
  @Get('ready')
  async ready(@Res({ passthrough: true }) response: Response): Promise<ReadinessReport> {
    const started = performance.now();
    try {
      const workers = await withTimeout(listLiveWorkers(this.redis, this.keys));
      return {
        status: 'ready',
        redis: { status: 'up', latencyMs: Math.round(performance.now() - started) },
        workers: { live: workers.length, list: workers },
      };
    } catch (error) {
      response.status(HttpStatus.SERVICE_UNAVAILABLE);
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
