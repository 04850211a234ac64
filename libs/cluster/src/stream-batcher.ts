import type { RedisClient } from './redis.js';
import { encodeStreamEvent, type RedisKeys, type StreamEvent } from '#contracts';

/**
 * Appends stream events of many jobs in one pipeline per turn of the event loop. The engine
 * delivers a tick's tokens of every sequence together; writing them with one round trip instead
 * of one per token keeps a worker's main thread and Redis nearly idle while it streams. Each
 * caller's promise settles when its event is in Redis, so a checkpoint awaited after its tokens
 * is still written after them.
 */
export class StreamBatcher {
  private pending: { jobId: string; event: StreamEvent }[] = [];
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
  ) {}

  append(jobId: string, event: StreamEvent): Promise<void> {
    this.pending.push({ jobId, event });
    this.flushing ??= new Promise<void>((resolve) => {
      setImmediate(resolve);
    }).then(() => this.flush());
    return this.flushing;
  }

  private async flush(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    this.flushing = undefined;
    const pipeline = this.redis.pipeline();
    for (const { jobId, event } of batch) {
      pipeline.xadd(this.keys.jobStream(jobId), '*', ...encodeStreamEvent(event));
    }
    const results = await pipeline.exec();
    const failure = results?.find(([error]) => error !== null)?.[0];
    if (failure) throw failure;
  }
}
