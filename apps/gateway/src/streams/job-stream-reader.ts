import type { OnApplicationShutdown } from '@nestjs/common';
import type { RedisClient } from '#cluster';
import { decodeStreamEvent, type RedisKeys, type StreamEvent } from '#contracts';
import type { StreamEntry } from '#cluster';

/**
 * Connections for blocking stream reads. `XREAD BLOCK` holds its connection for the whole wait,
 * so every concurrent reader needs its own; idle ones are kept for the next reader.
 */
export class BlockingReaders implements OnApplicationShutdown {
  private readonly idle: RedisClient[] = [];
  private readonly all = new Set<RedisClient>();

  constructor(
    private readonly connect: () => Promise<RedisClient>,
    /** Idle connections kept open. @defaultValue 32 */
    private readonly maxIdle = 32,
  ) {}

  async acquire(): Promise<RedisClient> {
    const reused = this.idle.pop();
    if (reused !== undefined) return reused;
    const redis = await this.connect();
    this.all.add(redis);
    return redis;
  }

  release(redis: RedisClient): void {
    if (this.idle.length < this.maxIdle && redis.status === 'ready') {
      this.idle.push(redis);
    } else {
      this.all.delete(redis);
      redis.disconnect();
    }
  }

  /** Disconnects every reader once the HTTP server has drained (no stream is followed then). */
  onApplicationShutdown(): void {
    for (const redis of this.all) redis.disconnect();
    this.all.clear();
    this.idle.length = 0;
  }
}

/** How long one blocking read waits; also the longest delay before an abort is noticed. */
const BLOCK_MS = 1000;

const tokenKey = (event: StreamEvent & { type: 'token' }) => `${event.choice}:${event.index}`;

/**
 * The entries of a job's stream up to and including `lastId`, each token once (the first entry
 * per choice and index). A reader resuming after `lastId` (an SSE `Last-Event-ID`) rebuilds its
 * state from these and passes `seen` on, so a token a resumed worker appended again is never
 * sent twice.
 */
export async function readStreamUntil(
  redis: RedisClient,
  keys: RedisKeys,
  jobId: string,
  lastId: string,
  seen: Set<string>,
): Promise<StreamEntry[]> {
  const entries = await redis.xrange(keys.jobStream(jobId), '-', lastId);
  const result: StreamEntry[] = [];
  for (const [id, fields] of entries) {
    const event = decodeStreamEvent(fields);
    if (event.type === 'token') {
      if (seen.has(tokenKey(event))) continue;
      seen.add(tokenKey(event));
    }
    result.push({ id, event });
  }
  return result;
}

export interface FollowOptions {
  /** Read after this entry id; '0' = from the start. */
  after: string;
  seen: Set<string>;
  signal: AbortSignal;
  /**
   * Asked after a read that brought nothing: true when the job can no longer write to its stream
   * (it failed without a worker recording it, or was removed), which ends the read.
   */
  hasEnded(): Promise<string | undefined>;
}

/**
 * Follows a job's stream until `done` or `failed`, yielding each token once. A job that ends
 * without writing its last event (e.g. it exhausted its retries after its workers died) ends the
 * read with a synthetic `failed` event carrying the reason.
 */
export async function* followJobStream(
  readers: BlockingReaders,
  keys: RedisKeys,
  jobId: string,
  options: FollowOptions,
): AsyncGenerator<StreamEntry> {
  const key = keys.jobStream(jobId);
  let after = options.after;
  const redis = await readers.acquire();
  try {
    while (!options.signal.aborted) {
      const reply = await redis.xread('COUNT', 512, 'BLOCK', BLOCK_MS, 'STREAMS', key, after);
      const entries = reply?.[0]?.[1] ?? [];
      if (entries.length === 0) {
        const reason = await options.hasEnded();
        if (reason !== undefined) {
          yield { id: after, event: { type: 'failed', message: reason } };
          return;
        }
        continue;
      }
      for (const [id, fields] of entries) {
        after = id;
        const event = decodeStreamEvent(fields);
        if (event.type === 'token') {
          if (options.seen.has(tokenKey(event))) continue;
          options.seen.add(tokenKey(event));
        }
        yield { id, event };
        if (event.type === 'done' || event.type === 'failed') return;
      }
    }
  } finally {
    readers.release(redis);
  }
}
