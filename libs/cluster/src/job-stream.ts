import type { Redis } from 'ioredis';
import {
  decodeStreamEvent,
  encodeStreamEvent,
  type DigestResult,
  type GenerateResult,
  type RedisKeys,
  type ScoreResult,
  type StreamEvent,
  type Usage,
} from '#contracts';

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
 * Collects a job's stream entries per choice, as readers see them in any order and with
 * duplicates (a resumed worker may append a token again): the first entry per (choice, index)
 * and per choice end wins, as everywhere else.
 */
export class StreamedChoices {
  private readonly tokens = new Map<number, Map<number, TokenStreamEvent>>();
  private readonly ends = new Map<number, ChoiceEndEvent>();

  add(event: StreamEvent): void {
    if (event.type === 'token') {
      const byIndex = this.tokens.get(event.choice) ?? new Map<number, TokenStreamEvent>();
      if (!byIndex.has(event.index)) byIndex.set(event.index, event);
      this.tokens.set(event.choice, byIndex);
    } else if (event.type === 'choice-end' && !this.ends.has(event.choice)) {
      this.ends.set(event.choice, event);
    }
  }

  /** Each choice seen: its gap-free run of tokens from index 0, and its end once it ended. */
  byChoice(): Map<number, StreamedChoice> {
    const result = new Map<number, StreamedChoice>();
    for (const choice of new Set([...this.tokens.keys(), ...this.ends.keys()])) {
      const byIndex = this.tokens.get(choice) ?? new Map<number, TokenStreamEvent>();
      const ordered: TokenStreamEvent[] = [];
      for (let index = 0; ; index += 1) {
        const token = byIndex.get(index);
        if (token === undefined) break;
        ordered.push(token);
      }
      result.set(choice, { tokens: ordered, end: this.ends.get(choice) });
    }
    return result;
  }

  /**
   * The generate result the stream describes. Every choice must have ended: a choice without an
   * end entry means the stream is incomplete (a bug or a lost write), never a silent "stop".
   * Usage counts every choice's tokens; prompt usage is choice 0's, whichever attempt ran it (a
   * job retried after all its choices ended still reports, and is charged for, its prompt).
   */
  generateResult(choices: number, withLogprobs: boolean): GenerateResult {
    const streamed = this.byChoice();
    const first = streamed.get(0)?.end;
    const usage: Usage = {
      promptTokens: first?.promptTokens ?? 0,
      completionTokens: [...streamed.values()].reduce(
        (sum, choice) => sum + choice.tokens.length,
        0,
      ),
      cachedTokens: first?.cachedTokens ?? 0,
    };
    return {
      choices: Array.from({ length: choices }, (_unused, index) => {
        const choice = streamed.get(index);
        if (choice?.end === undefined) {
          throw new IncompleteStreamError(`choice ${index} of ${choices} has no end entry`);
        }
        return {
          index,
          text: choice.tokens.map((event) => event.text).join('') + choice.end.text,
          finishReason: choice.end.finishReason,
          ...(withLogprobs
            ? {
                logprobs: choice.tokens.map((event) => ({
                  text: event.text,
                  logprob: event.logprob,
                  top: event.top ?? [],
                })),
              }
            : {}),
        };
      }),
      usage,
    };
  }
}

/** A job's stream ended without something its readers need (a choice's end entry). */
export class IncompleteStreamError extends Error {
  override readonly name = 'IncompleteStreamError';
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
): Promise<StreamedChoices> {
  const entries = await redis.xrange(keys.jobStream(jobId), '-', '+');
  const choices = new StreamedChoices();
  for (const [, fields] of entries) choices.add(decodeStreamEvent(fields));
  return choices;
}

/**
 * Results up to this many bytes of JSON travel in the `done` entry; larger ones (per-token
 * log-probs of a long document) go to their own key. @defaultValue 64 KiB
 */
export const INLINE_RESULT_MAX_BYTES = 64 * 1024;

/**
 * Ends a job's stream with its usage and (score, digest) result, so that readers answer from
 * the stream alone. A large result is written to `RedisKeys.jobResult` in the same transaction,
 * with the stream's lifetime.
 */
export async function appendDone(
  redis: Redis,
  keys: RedisKeys,
  jobId: string,
  usage: Usage,
  result?: ScoreResult | DigestResult,
): Promise<void> {
  const json = result === undefined ? undefined : JSON.stringify(result);
  const inline = json === undefined || Buffer.byteLength(json) <= INLINE_RESULT_MAX_BYTES;
  const done: DoneEvent = {
    type: 'done',
    usage,
    ...(result === undefined ? {} : inline ? { result } : { resultKey: keys.jobResult(jobId) }),
  };
  const stream = keys.jobStream(jobId);
  const transaction = redis.multi();
  if (!inline) {
    transaction.set(keys.jobResult(jobId), json, 'EX', FINISHED_STREAM_TTL_SECONDS);
  }
  transaction.xadd(stream, '*', ...encodeStreamEvent(done));
  transaction.expire(stream, FINISHED_STREAM_TTL_SECONDS);
  const results = await transaction.exec();
  const failure = results?.find(([error]) => error !== null)?.[0];
  if (failure) throw failure;
}

export type DoneEvent = Extract<StreamEvent, { type: 'done' }>;

/** A `done` entry's result, read from its key when it was too large to travel inline. */
export async function doneResult(
  redis: Redis,
  done: DoneEvent,
): Promise<ScoreResult | DigestResult | undefined> {
  if (done.resultKey === undefined) return done.result;
  const json = await redis.get(done.resultKey);
  if (json === null) throw new Error(`the job's result (${done.resultKey}) has expired`);
  return JSON.parse(json) as ScoreResult | DigestResult;
}

/** How a job's stream ended, with the entry's id, or undefined while it has not. */
export async function readStreamEnd(
  redis: Redis,
  keys: RedisKeys,
  jobId: string,
): Promise<
  { id: string; event: DoneEvent | Extract<StreamEvent, { type: 'failed' }> } | undefined
> {
  const entries: [id: string, fields: string[]][] = await redis.xrevrange(
    keys.jobStream(jobId),
    '+',
    '-',
    'COUNT',
    1,
  );
  const last = entries[0];
  if (last === undefined) return undefined;
  const [id, fields] = last;
  const event = decodeStreamEvent(fields);
  return event.type === 'done' || event.type === 'failed' ? { id, event } : undefined;
}
