import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { redisKeys, type ScoreResult } from '#contracts';
import {
  appendDone,
  appendFailed,
  appendStreamEvents,
  doneResult,
  FINISHED_STREAM_TTL_SECONDS,
  IncompleteStreamError,
  INLINE_RESULT_MAX_BYTES,
  readStreamedChoices,
  readStreamEnd,
  StreamedChoices,
  type ProgressStreamEvent,
} from '#cluster';
import { deletePrefix, uniquePrefix } from '#testing';

const token = (choice: number, index: number, text: string): ProgressStreamEvent => ({
  type: 'token',
  choice,
  index,
  token: index,
  text,
  logprob: -index,
});
const end = (choice: number, promptTokens: number, cachedTokens = 0): ProgressStreamEvent => ({
  type: 'choice-end',
  choice,
  finishReason: 'length',
  text: '!',
  promptTokens,
  cachedTokens,
});

describe('StreamedChoices', () => {
  it('keeps the first entry per index and choice end, in index order, up to the first gap', () => {
    const choices = new StreamedChoices();
    for (const event of [
      token(0, 0, 'a'),
      token(0, 1, 'b'),
      token(0, 1, 'B'), // appended again by a resumed worker: the first one stands
      token(0, 3, 'd'), // after a gap: not (yet) part of the choice's text
      end(0, 5),
      end(0, 9),
    ]) {
      choices.add(event);
    }
    const choice = choices.byChoice().get(0);
    expect(choice?.tokens.map((event) => event.text)).toEqual(['a', 'b']);
    expect(choice?.end).toMatchObject({ promptTokens: 5 });
  });

  it("builds a generate result with every choice's tokens and choice 0's prompt usage", () => {
    const choices = new StreamedChoices();
    for (const event of [
      token(1, 0, 'x'),
      token(0, 0, 'a'),
      end(1, 7, 3),
      token(0, 1, 'b'),
      end(0, 7, 0),
    ]) {
      choices.add(event);
    }
    expect(choices.generateResult(2, true)).toEqual({
      choices: [
        {
          index: 0,
          text: 'ab!',
          finishReason: 'length',
          logprobs: [
            { text: 'a', logprob: -0, top: [] },
            { text: 'b', logprob: -1, top: [] },
          ],
        },
        {
          index: 1,
          text: 'x!',
          finishReason: 'length',
          logprobs: [{ text: 'x', logprob: -0, top: [] }],
        },
      ],
      usage: { promptTokens: 7, completionTokens: 3, cachedTokens: 0 },
    });
  });

  it('refuses a result with a choice that never ended, instead of calling it a stop', () => {
    const choices = new StreamedChoices();
    for (const event of [token(0, 0, 'a'), end(0, 4), token(1, 0, 'x')]) choices.add(event);
    expect(() => choices.generateResult(2, false)).toThrow(IncompleteStreamError);
    expect(() => choices.generateResult(2, false)).toThrow(/choice 1 of 2 has no end entry/);
  });
});

describe('job stream ends (real Redis)', () => {
  let redis: Redis;
  const prefix = uniquePrefix('stream');
  const keys = redisKeys(prefix);
  const usage = { promptTokens: 3, completionTokens: 0, cachedTokens: 0 };
  const scoreResult = (tokens: number): ScoreResult => ({
    tokens,
    totalNll: tokens,
    perplexity: Math.E,
    windows: [],
    tokenLogprobs: Array.from({ length: tokens }, (_unused, index) => -1 - index / 7),
  });

  beforeAll(() => {
    redis = new Redis(inject('redisUrl'));
  });
  afterAll(async () => {
    await deletePrefix(redis, prefix);
    await redis.quit();
  });

  it('carries a small result inline and ends the stream with its lifetime', async () => {
    await appendStreamEvents(redis, keys, 'small', [token(0, 0, 'a')]);
    expect(await readStreamEnd(redis, keys, 'small')).toBeUndefined();
    await appendDone(redis, keys, 'small', usage, scoreResult(3));
    const ending = await readStreamEnd(redis, keys, 'small');
    expect(ending?.event).toEqual({ type: 'done', usage, result: scoreResult(3) });
    if (ending?.event.type !== 'done') throw new Error('no done entry');
    expect(await doneResult(redis, ending.event)).toEqual(scoreResult(3));
    expect(await redis.ttl(keys.jobStream('small'))).toBeGreaterThan(
      FINISHED_STREAM_TTL_SECONDS - 60,
    );
    expect(await redis.exists(keys.jobResult('small'))).toBe(0);
  });

  it('puts a result larger than the inline limit under its own key', async () => {
    const large = scoreResult(10_000);
    expect(JSON.stringify(large).length).toBeGreaterThan(INLINE_RESULT_MAX_BYTES);
    await appendDone(redis, keys, 'large', usage, large);
    const ending = await readStreamEnd(redis, keys, 'large');
    expect(ending?.event).toEqual({ type: 'done', usage, resultKey: keys.jobResult('large') });
    if (ending?.event.type !== 'done') throw new Error('no done entry');
    expect(await doneResult(redis, ending.event)).toEqual(large);
    expect(await redis.ttl(keys.jobResult('large'))).toBeGreaterThan(
      FINISHED_STREAM_TTL_SECONDS - 60,
    );
    // Readers of the stream's choices are unaffected by the done entry.
    expect((await readStreamedChoices(redis, keys, 'large')).byChoice().size).toBe(0);
  });

  it('ends a stream once: a retried end and a later failure leave the first end standing', async () => {
    await appendDone(redis, keys, 'twice', usage, scoreResult(3));
    const first = await readStreamEnd(redis, keys, 'twice');
    await appendDone(redis, keys, 'twice', { ...usage, promptTokens: 99 }, scoreResult(99));
    await appendFailed(redis, keys, 'twice', 'too late');
    expect(await readStreamEnd(redis, keys, 'twice')).toEqual(first);
    expect(await redis.xlen(keys.jobStream('twice'))).toBe(1);
    await appendFailed(redis, keys, 'failed', 'boom');
    expect((await readStreamEnd(redis, keys, 'failed'))?.event).toEqual({
      type: 'failed',
      message: 'boom',
    });
  });
});
