import type { Redis } from 'ioredis';
import { decodeStreamEvent, encodeStreamEvent, type RedisKeys, type StreamEvent } from '#contracts';

/**
 * A job's output stream in Redis (DESIGN.md decision 4): workers append, any number of readers
 * (SSE connections, synchronous waits, the jobs API) follow it from any entry id. The stream is
 * kept whole while the job lives, so a client that reconnects with `Last-Event-ID` misses nothing.
 */

/** How long a finished job's stream is kept for late readers. @defaultValue 24 h */
export const FINISHED_STREAM_TTL_SECONDS = 24 * 3600;

export async function appendStreamEvents(
  redis: Redis,
  keys: RedisKeys,
  jobId: string,
  events: readonly StreamEvent[],
): Promise<void> {
  if (events.length === 0) return;
  const key = keys.jobStream(jobId);
  const pipeline = redis.pipeline();
  for (const event of events) pipeline.xadd(key, '*', ...encodeStreamEvent(event));
  if (events.some((event) => event.type === 'done' || event.type === 'failed')) {
    pipeline.expire(key, FINISHED_STREAM_TTL_SECONDS);
  }
  const results = await pipeline.exec();
  const failure = results?.find(([error]) => error !== null)?.[0];
  if (failure) throw failure;
}

export interface StreamEntry {
  /** The Redis stream entry id, usable as an SSE event id and as `after` to resume. */
  id: string;
  event: StreamEvent;
}

type TokenStreamEvent = Extract<StreamEvent, { type: 'token' }>;
type ChoiceEndEvent = Extract<StreamEvent, { type: 'choice-end' }>;

/** What a job's stream holds for one choice. */
export interface StreamedChoice {
  /** The gap-free run of tokens from index 0, first entry per index. */
  tokens: TokenStreamEvent[];
  /** Set once the choice has ended. */
  end: ChoiceEndEvent | undefined;
}

/**
 * Everything a job's stream holds, per choice: a worker that resumes the job replays these
 * tokens instead of sampling them again, skips ended choices, and builds the final result from
 * the stream (the source of truth) rather than from its own memory.
 */
export async function readStreamedChoices(
  redis: Redis,
  keys: RedisKeys,
  jobId: string,
): Promise<Map<number, StreamedChoice>> {
  const entries = await redis.xrange(keys.jobStream(jobId), '-', '+');
  const tokens = new Map<number, Map<number, TokenStreamEvent>>();
  const ends = new Map<number, ChoiceEndEvent>();
  for (const [, fields] of entries) {
    const event = decodeStreamEvent(fields);
    if (event.type === 'token') {
      const byIndex = tokens.get(event.choice) ?? new Map<number, TokenStreamEvent>();
      if (!byIndex.has(event.index)) byIndex.set(event.index, event);
      tokens.set(event.choice, byIndex);
    } else if (event.type === 'choice-end' && !ends.has(event.choice)) {
      ends.set(event.choice, event);
    }
  }
  const result = new Map<number, StreamedChoice>();
  for (const choice of new Set([...tokens.keys(), ...ends.keys()])) {
    const byIndex = tokens.get(choice) ?? new Map<number, TokenStreamEvent>();
    const ordered: TokenStreamEvent[] = [];
    for (let index = 0; ; index += 1) {
      const token = byIndex.get(index);
      if (token === undefined) break;
      ordered.push(token);
    }
    result.set(choice, { tokens: ordered, end: ends.get(choice) });
  }
  return result;
}
