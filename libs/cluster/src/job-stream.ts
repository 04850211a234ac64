import type { RedisClient } from './redis.js';
import { withLuaCommands } from './lua-commands.js';
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

/** Entries a running job appends; its end goes through `appendDone` or `appendFailed`. */
export type ProgressStreamEvent = Exclude<StreamEvent, { type: 'done' | 'failed' }>;

export async function appendStreamEvents(
  redis: RedisClient,
  keys: RedisKeys,
  jobId: string,
  events: readonly ProgressStreamEvent[],
): Promise<void> {
  if (events.length === 0) return;
  const key = keys.jobStream(jobId);
  const pipeline = redis.pipeline();
  for (const event of events) pipeline.xadd(key, '*', ...encodeStreamEvent(event));
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
  redis: RedisClient,
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
 * KEYS: the stream, the end marker, the result key; ARGV: the entry's field and value, the TTL
 * (s), the result JSON ('' for none). Appends the end entry only when the stream has none: a job
 * retried after it ended (its worker died before BullMQ recorded it) cannot end it twice.
 * Replies 1 when it appended, 0 when the stream had ended already.
 */
const APPEND_END_ONCE_SCRIPT = `
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[3]) end
local id = redis.call('XADD', KEYS[1], '*', ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], id, 'EX', ARGV[3])
return 1
`;

interface JobStreamCommands {
  /** {@link APPEND_END_ONCE_SCRIPT} */
  appendStreamEndOnce(
    streamKey: string,
    endMarkerKey: string,
    resultKey: string,
    field: string,
    value: string,
    ttlSeconds: number,
    resultJson: string,
  ): Promise<number>;
}

const withJobStreamCommands = (redis: RedisClient): RedisClient & JobStreamCommands =>
  withLuaCommands<JobStreamCommands>(redis, {
    appendStreamEndOnce: { numberOfKeys: 3, lua: APPEND_END_ONCE_SCRIPT },
  });

export type DoneEvent = Extract<StreamEvent, { type: 'done' }>;
export type FailedEvent = Extract<StreamEvent, { type: 'failed' }>;

/** Where a job's result went: into its `done` entry, or to its own key (too large). */
export type StoredResult = 'none' | 'inline' | 'key';

/**
 * Ends a job's stream with its usage and (score, digest) result, so that readers answer from
 * the stream alone. A large result is written to `RedisKeys.jobResult` in the same step, with
 * the stream's lifetime. A stream that has ended already is left as it is.
 */
export async function appendDone(
  redis: RedisClient,
  keys: RedisKeys,
  jobId: string,
  usage: Usage,
  result?: ScoreResult | DigestResult,
): Promise<StoredResult> {
  const json = result === undefined ? '' : JSON.stringify(result);
  const stored: StoredResult =
    result === undefined
      ? 'none'
      : Buffer.byteLength(json) <= INLINE_RESULT_MAX_BYTES
        ? 'inline'
        : 'key';
  const done: DoneEvent = {
    type: 'done',
    usage,
    ...(stored === 'inline' ? { result } : {}),
    ...(stored === 'key' ? { resultKey: keys.jobResult(jobId) } : {}),
  };
  await appendEnd(redis, keys, jobId, done, stored === 'key' ? json : '');
  return stored;
}

/** Ends a job's stream with a failure (only when BullMQ will not retry the job). */
export async function appendFailed(
  redis: RedisClient,
  keys: RedisKeys,
  jobId: string,
  message: string,
): Promise<void> {
  await appendEnd(redis, keys, jobId, { type: 'failed', message }, '');
}

async function appendEnd(
  redis: RedisClient,
  keys: RedisKeys,
  jobId: string,
  event: DoneEvent | FailedEvent,
  resultJson: string,
): Promise<void> {
  const [field, value] = encodeStreamEvent(event);
  if (field === undefined || value === undefined) throw new Error('unreachable: empty entry');
  await withJobStreamCommands(redis).appendStreamEndOnce(
    keys.jobStream(jobId),
    keys.jobEnd(jobId),
    keys.jobResult(jobId),
    field,
    value,
    FINISHED_STREAM_TTL_SECONDS,
    resultJson,
  );
}

/** A `done` entry's result, read from its key when it was too large to travel inline. */
export async function doneResult(
  redis: RedisClient,
  done: DoneEvent,
): Promise<ScoreResult | DigestResult | undefined> {
  if (done.resultKey === undefined) return done.result;
  const json = await redis.get(done.resultKey);
  if (json === null) throw new Error(`the job's result (${done.resultKey}) has expired`);
  return JSON.parse(json) as ScoreResult | DigestResult;
}

/** How a job's stream ended, with the entry's id, or undefined while it has not. */
export async function readStreamEnd(
  redis: RedisClient,
  keys: RedisKeys,
  jobId: string,
): Promise<{ id: string; event: DoneEvent | FailedEvent } | undefined> {
  const id = await redis.get(keys.jobEnd(jobId));
  if (id === null) return undefined;
  const entries: [id: string, fields: string[]][] = await redis.xrange(
    keys.jobStream(jobId),
    id,
    id,
  );
  const fields = entries[0]?.[1];
  if (fields === undefined) return undefined;
  const event = decodeStreamEvent(fields);
  if (event.type !== 'done' && event.type !== 'failed') {
    throw new Error(`the end of job ${jobId}'s stream is a '${event.type}' entry`);
  }
  return { id, event };
}
