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
    /**
     * Checked again when the batch is written, a turn of the event loop after `append`: a job
     * may have lost the right to write meanwhile (the connection dropped, its lock was lost).
     */
    private readonly mayWrite: (jobId: string) => boolean = () => true,
  ) {}

  append(jobId: string, event: StreamEvent): Promise<void> {
    this.pending.push({ jobId, event });
    this.flushing ??= new Promise<void>((resolve) => {
      setImmediate(resolve);
    }).then(() => this.flush());
    return this.flushing;
  }

  private async flush(): Promise<void> {
    const batch = this.pending.filter(({ jobId }) => this.mayWrite(jobId));
    this.pending = [];
    this.flushing = undefined;
    if (batch.length === 0) return;
    const pipeline = this.redis.pipeline();
    for (const { jobId, event } of batch) {
      pipeline.xadd(this.keys.jobStream(jobId), '*', ...encodeStreamEvent(event));
    }
    const results = await pipeline.exec();
    const failure = results?.find(([error]) => error !== null)?.[0];
    if (failure) throw failure;
  }
}
