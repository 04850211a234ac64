import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  encodeStreamEvent,
  JobName,
  JobPriority,
  redisKeys,
  type GenerateResult,
  type ScoreResult,
  type StreamEvent,
} from '#contracts';
import {
  appendDone,
  appendStreamEvents,
  PrefixCache,
  requestCancel,
  type ProgressStreamEvent,
} from '#cluster';
import type { ServiceProcess } from '#processes';
import { DEFAULT_SAMPLING, Engine, summarizeScore, type SamplingParams } from '#engine';
import { createPresetBundle } from '#model';
import { startWorker, testModelDir, TEST_MODEL_ID, uniquePrefix } from '#testing';
import { waitFor } from '../support/wait.js';
import { generatePayload, indexesByChoice, TestProducer } from './support.js';

/** Seeded sampling with end-of-text (256) banned, so lengths are exactly max_tokens. */
const seeded = { temperature: 0.8, top_p: 0.95, seed: 77, logit_bias: { '256': -100 } };

function samplingParams(seed: number): SamplingParams {
  return {
    ...DEFAULT_SAMPLING,
    temperature: 0.8,
    topP: 0.95,
    logitBias: new Map([[256, -100]]),
    seed,
  };
}

/**
 * The independent reference: the same bundle run in this process by the engine, uninterrupted,
 * with no Redis, no queue and no worker.
 */
let reference: Engine;
async function referenceText(prompt: string, maxTokens: number, seed: number): Promise<string> {
  let text = '';
  await reference.run(
    {
      id: `ref-${Math.random()}`,
      kind: 'generate',
      priority: JobPriority.Interactive,
      text: prompt,
      prefixBlockTokens: 0,
      generate: { sampling: samplingParams(seed), choice: 0, maxTokens, stop: [] },
    },
    {
      start: () => ({ position: 0, skip: 0, replay: [] }),
      onEvent: (event) => {
        if (event.type === 'token' || event.type === 'finished') text += event.text;
      },
    },
  );
  return text;
}

async function referenceScore(text: string): Promise<number[]> {
  const outcome = await reference.run(
    { id: `ref-${Math.random()}`, kind: 'score', priority: 2, text, prefixBlockTokens: 0 },
    { start: () => ({ position: 0, skip: 0, replay: [] }) },
  );
  return outcome.type === 'finished' ? Array.from(outcome.logprobs ?? []) : [];
}

function expectEachIndexOnce(events: readonly StreamEvent[], choices: number[]): void {
  const byChoice = indexesByChoice(events);
  for (const choice of choices) {
    const indexes = byChoice.get(choice) ?? [];
    expect(indexes, `choice ${choice}`).toEqual(indexes.map((_unused, position) => position));
  }
}

describe('worker processes against real Redis', () => {
  const redisUrl = inject('redisUrl');
  let producer: TestProducer;
  let prefix: string;
  const workers: ServiceProcess[] = [];
  const spawn = async (env: Record<string, string> = {}): Promise<ServiceProcess> => {
    const worker = await startWorker(redisUrl, { QUEUE_PREFIX: prefix, ...env });
    workers.push(worker);
    return worker;
  };

  beforeAll(async () => {
    reference = await Engine.start({ bundleDir: testModelDir(), intraOpThreads: 1 });
  });
  afterAll(async () => {
    await reference.close();
  });
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((worker) => worker.stop('SIGKILL')));
    await producer.close();
  });
  const prefixStats = () =>
    new PrefixCache(producer.redis, redisKeys(prefix), TEST_MODEL_ID, 1, 1).stats();
  const fresh = (label: string): void => {
    prefix = uniquePrefix(label);
    producer = new TestProducer(redisUrl, prefix);
  };

  it('generates what the engine generates in-process, streaming each index once', async () => {
    fresh('gen');
    await spawn();
    await producer.add(
      JobName.Generate,
      generatePayload('Hello there', { ...seeded, max_tokens: 40, logprobs: 2 }, { n: 2 }),
      { jobId: 'job-gen', priority: JobPriority.Interactive },
    );
    const result = (await producer.result(TEST_MODEL_ID, 'job-gen')) as GenerateResult;
    expect(result.choices[0]?.text).toBe(await referenceText('Hello there', 40, 77));
    expect(result.choices[0]?.finishReason).toBe('length');
    expect(result.choices[1]?.text).not.toBe(result.choices[0]?.text);
    expect(result.choices[0]?.logprobs).toHaveLength(40);
    expect(result.choices[0]?.logprobs?.[0]?.top).toHaveLength(2);
    expect(result.usage).toEqual({ promptTokens: 11, completionTokens: 80, cachedTokens: 0 });
    const events = await producer.stream('job-gen');
    expectEachIndexOnce(events, [0, 1]);
    expect(events.at(-1)).toEqual({
      type: 'done',
      usage: { promptTokens: 11, completionTokens: 80, cachedTokens: 0 },
    });
  });

  it('reports and charges the prompt of a retried job whose choices had all ended', async () => {
    fresh('retry-usage');
    // What an attempt that died between its last choice end and its `done` entry left behind.
    const attempt: StreamEvent[] = [
      ...[0, 1, 2].map((index) => ({
        type: 'token' as const,
        choice: 0,
        index,
        token: 97 + index,
        text: String.fromCharCode(97 + index),
        logprob: -1,
      })),
      {
        type: 'choice-end',
        choice: 0,
        finishReason: 'length',
        text: '',
        promptTokens: 11,
        cachedTokens: 0,
      },
    ];
    const keys = redisKeys(prefix);
    for (const event of attempt) {
      await producer.redis.xadd(keys.jobStream('job-retry'), '*', ...encodeStreamEvent(event));
    }
    await spawn();
    await producer.add(
      JobName.Generate,
      generatePayload('Hello there', { ...seeded, max_tokens: 3 }),
      { jobId: 'job-retry' },
    );
    const result = (await producer.result(TEST_MODEL_ID, 'job-retry')) as GenerateResult;
    const usage = { promptTokens: 11, completionTokens: 3, cachedTokens: 0 };
    expect(result.choices[0]?.text).toBe('abc');
    expect(result.usage).toEqual(usage);
    expect((await producer.stream('job-retry')).at(-1)).toEqual({ type: 'done', usage });
    expect(await producer.chargedTokens('tenant-test')).toBe(14);
  });

  it('does not run again a job whose stream ended; charges it once and returns the stream', async () => {
    fresh('ended');
    const keys = redisKeys(prefix);
    const usage = { promptTokens: 11, completionTokens: 2, cachedTokens: 0 };
    const attempt: ProgressStreamEvent[] = [
      { type: 'token', choice: 0, index: 0, token: 104, text: 'h', logprob: -1 },
      { type: 'token', choice: 0, index: 1, token: 105, text: 'i', logprob: -1 },
      {
        type: 'choice-end',
        choice: 0,
        finishReason: 'length',
        text: '',
        promptTokens: 11,
        cachedTokens: 0,
      },
    ];
    await appendStreamEvents(producer.redis, keys, 'job-ended', attempt);
    await appendDone(producer.redis, keys, 'job-ended', usage);
    await spawn();
    await producer.add(
      JobName.Generate,
      generatePayload('Hello there', { ...seeded, max_tokens: 2 }),
      { jobId: 'job-ended' },
    );
    const result = (await producer.result(TEST_MODEL_ID, 'job-ended')) as GenerateResult;
    expect(result).toEqual({
      choices: [{ index: 0, text: 'hi', finishReason: 'length' }],
      usage,
    });
    const events = await producer.stream('job-ended');
    expect(events.filter((event) => event.type === 'done')).toHaveLength(1);
    expect(events.filter((event) => event.type === 'token')).toHaveLength(2);
    expect(await producer.chargedTokens('tenant-test')).toBe(13);
  });

  it('completes a job cancelled while waiting with what an earlier attempt streamed', async () => {
    fresh('cancel-waiting');
    const keys = redisKeys(prefix);
    // An earlier attempt ended choice 0 and streamed two tokens of choice 1, then its worker
    // stopped; the job was cancelled before another worker took it.
    await appendStreamEvents(producer.redis, keys, 'job-cw', [
      ...['a', 'b', 'c'].map((text, index) => ({
        type: 'token' as const,
        choice: 0,
        index,
        token: 97 + index,
        text,
        logprob: -1,
      })),
      {
        type: 'choice-end',
        choice: 0,
        finishReason: 'length',
        text: '',
        promptTokens: 11,
        cachedTokens: 0,
      },
      ...['x', 'y'].map((text, index) => ({
        type: 'token' as const,
        choice: 1,
        index,
        token: 120 + index,
        text,
        logprob: -1,
      })),
    ]);
    await requestCancel(producer.redis, keys, 'job-cw');
    await spawn();
    await producer.add(
      JobName.Generate,
      generatePayload('Hello there', { ...seeded, max_tokens: 3 }, { n: 2 }),
      { jobId: 'job-cw' },
    );
    const result = (await producer.result(TEST_MODEL_ID, 'job-cw')) as GenerateResult;
    expect(result).toEqual({
      choices: [
        { index: 0, text: 'abc', finishReason: 'length' },
        { index: 1, text: 'xy', finishReason: 'cancelled' },
      ],
      usage: { promptTokens: 11, completionTokens: 5, cachedTokens: 0 },
    });
    expect(await producer.chargedTokens('tenant-test')).toBe(16);
  });

  it('ends a score stream with its result, inline or under a key when large', async () => {
    fresh('score-done');
    await spawn();
    const score = (jobId: string, text: string) =>
      producer.add(
        JobName.Score,
        { model: TEST_MODEL_ID, owner: 'tenant-test', input: { text }, tokenLogprobs: true },
        { jobId, priority: JobPriority.Document },
      );
    await score('job-small', 'A short text.');
    await score('job-large', 'Many tokens, each with its own log-probability. '.repeat(100));
    const small = (await producer.result(TEST_MODEL_ID, 'job-small')) as ScoreResult;
    const large = (await producer.result(TEST_MODEL_ID, 'job-large')) as ScoreResult;
    // BullMQ keeps the summary; the per-token log-probs live under the result key only.
    expect(large.tokenLogprobs).toBeUndefined();
    expect(small.tokenLogprobs).toHaveLength(13);
    expect((await producer.stream('job-small')).at(-1)).toEqual({
      type: 'done',
      usage: { promptTokens: 13, completionTokens: 0, cachedTokens: 0 },
      result: small,
    });
    const done = (await producer.stream('job-large')).at(-1);
    const resultKey = redisKeys(prefix).jobResult('job-large');
    expect(done).toEqual({
      type: 'done',
      usage: { promptTokens: 4800, completionTokens: 0, cachedTokens: 0 },
      resultKey,
    });
    const stored = JSON.parse((await producer.redis.get(resultKey)) ?? 'null') as ScoreResult;
    expect(stored.tokenLogprobs).toHaveLength(4800);
    expect({ ...stored, tokenLogprobs: undefined }).toEqual(large);
    expect(stored.totalNll).toBeCloseTo(
      -(stored.tokenLogprobs ?? []).reduce((sum, logprob) => sum + logprob, 0),
      6,
    );
    expect(await producer.redis.ttl(resultKey)).toBeGreaterThan(3600);
  });

  it('resumes on another worker after SIGKILL mid-generation, with identical output', async () => {
    fresh('kill-gen');
    const doomed = await spawn({ CHECKPOINT_EVERY_TOKENS: '8' });
    const maxTokens = 1500;
    await producer.add(
      JobName.Generate,
      generatePayload('Resume me', { ...seeded, max_tokens: maxTokens }),
      { jobId: 'job-kill' },
    );
    await waitFor(async () => (await producer.tokenCount('job-kill')) >= 100, {
      message: '100 tokens streamed',
    });
    await doomed.stop('SIGKILL');
    const streamedAtKill = await producer.tokenCount('job-kill');
    expect(streamedAtKill).toBeLessThan(maxTokens);
    await spawn();
    const result = (await producer.result(TEST_MODEL_ID, 'job-kill')) as GenerateResult;
    expect(result.choices[0]?.text).toBe(await referenceText('Resume me', maxTokens, 77));
    const events = await producer.stream('job-kill');
    expectEachIndexOnce(events, [0]);
    expect(indexesByChoice(events).get(0)).toHaveLength(maxTokens);
  });

  it('resumes a document score after SIGKILL mid-prefill, with the same NLL', async () => {
    fresh('kill-score');
    const document = Array.from(
      { length: 3000 },
      (_unused, i) => `Line ${i} of a long document.`,
    ).join('\n');
    const doomed = await spawn({
      ENGINE_PREFILL_CHUNK: '64',
      CHECKPOINT_PREFILL_EVERY_TOKENS: '256',
    });
    await producer.add(
      JobName.Score,
      { model: TEST_MODEL_ID, owner: 'tenant-test', input: { text: document }, windowTokens: 1000 },
      { jobId: 'job-score', priority: JobPriority.Document },
    );
    const checkpointMeta = redisKeys(prefix).checkpointMeta('job-score', 0);
    await waitFor(
      async () => Number(await producer.redis.hget(checkpointMeta, 'absorbed')) >= 2000,
      { intervalMs: 10, message: 'a prefill checkpoint past 2000 tokens' },
    );
    await doomed.stop('SIGKILL');
    const absorbedAtKill = Number(await producer.redis.hget(checkpointMeta, 'absorbed'));
    expect(absorbedAtKill).toBeLessThan(document.length);
    expect(await (await producer.queue(TEST_MODEL_ID).getJob('job-score'))?.getState()).toBe(
      'active',
    );
    await spawn();
    const result = (await producer.result(TEST_MODEL_ID, 'job-score')) as ScoreResult;
    const expected = summarizeScore(await referenceScore(document), 1000);
    expect(result.tokens).toBe(expected.tokens);
    expect(result.totalNll).toBeCloseTo(expected.totalNll, 3);
    // Different chunk boundaries change fp32 rounding, not the result: 1e-5 relative per window.
    expect(result.windows).toHaveLength(expected.windows.length);
    result.windows.forEach((window, index) => {
      const reference = expected.windows[index]?.perplexity ?? Number.NaN;
      expect(Math.abs(window.perplexity - reference) / reference).toBeLessThan(1e-5);
    });
  });

  it('drains on SIGTERM: checkpoints, hands the job back, exits 0; another worker finishes it', async () => {
    fresh('drain');
    const draining = await spawn();
    await producer.add(
      JobName.Generate,
      generatePayload('Drain me', { ...seeded, max_tokens: 1500 }),
      { jobId: 'job-drain' },
    );
    await waitFor(async () => (await producer.tokenCount('job-drain')) >= 50, {
      message: '50 tokens streamed',
    });
    const exit = await draining.stop('SIGTERM', 20_000);
    expect(exit).toEqual({ code: 0, signal: null });
    const job = await producer.queue(TEST_MODEL_ID).getJob('job-drain');
    expect(await job?.getState()).toBe('waiting');
    await spawn();
    const result = (await producer.result(TEST_MODEL_ID, 'job-drain')) as GenerateResult;
    expect(result.choices[0]?.text).toBe(await referenceText('Drain me', 1500, 77));
    expectEachIndexOnce(await producer.stream('job-drain'), [0]);
  });

  it('cancels a running job from another process, keeping the partial output', async () => {
    fresh('cancel');
    await spawn();
    await producer.add(
      JobName.Generate,
      generatePayload('Cancel me', { ...seeded, max_tokens: 5000 }),
      { jobId: 'job-cancel' },
    );
    await waitFor(async () => (await producer.tokenCount('job-cancel')) >= 20, {
      message: '20 tokens streamed',
    });
    await requestCancel(producer.redis, redisKeys(prefix), 'job-cancel');
    const result = (await producer.result(TEST_MODEL_ID, 'job-cancel')) as GenerateResult;
    expect(result.choices[0]?.finishReason).toBe('cancelled');
    const streamed = (await producer.stream('job-cancel')).flatMap((e) =>
      e.type === 'token' ? [e] : [],
    );
    expect(streamed.length).toBeGreaterThanOrEqual(20);
    expect(streamed.length).toBeLessThan(5000);
    // The text is what was streamed, plus any bytes held back at the cut (the choice-end text).
    const end = (await producer.stream('job-cancel')).find((e) => e.type === 'choice-end');
    expect(end).toMatchObject({ type: 'choice-end', finishReason: 'cancelled' });
    const held = end?.type === 'choice-end' ? end.text : '';
    expect(result.choices[0]?.text).toBe(streamed.map((e) => e.text).join('') + held);
  });

  it('shares a long prompt prefix across jobs through the prefix cache, with identical output', async () => {
    fresh('prefix');
    await spawn({ PREFIX_BLOCK_TOKENS: '128' });
    const shared = 'A shared system prompt that many requests start with. '.repeat(12);
    await producer.add(
      JobName.Generate,
      generatePayload(`${shared}First question?`, { ...seeded, max_tokens: 20 }),
      { jobId: 'job-p1' },
    );
    const first = (await producer.result(TEST_MODEL_ID, 'job-p1')) as GenerateResult;
    await producer.add(
      JobName.Generate,
      generatePayload(`${shared}Second question?`, { ...seeded, max_tokens: 20 }),
      { jobId: 'job-p2' },
    );
    const second = (await producer.result(TEST_MODEL_ID, 'job-p2')) as GenerateResult;
    expect(first.usage.cachedTokens).toBe(0);
    // The prompt is 648 + 16 bytes: the 640-token prefix (5 blocks of 128) comes from the cache.
    expect(second.usage.cachedTokens).toBe(640);
    expect(second.choices[0]?.text).toBe(await referenceText(`${shared}Second question?`, 20, 77));
    const stats = await prefixStats();
    expect(stats.hits).toBe(1);
    expect(stats.misses).toBe(1);
  });

  it('computes a prefix shared by concurrent jobs once: the others wait for its state', async () => {
    fresh('prefix-once');
    await spawn({ PREFIX_BLOCK_TOKENS: '128' });
    const shared = 'A shared system prompt that many requests start with. '.repeat(12);
    const questions = ['First?', 'Second?', 'Third?', 'Fourth?'];
    await Promise.all(
      questions.map((question, index) =>
        producer.add(
          JobName.Generate,
          generatePayload(`${shared}${question}`, { ...seeded, max_tokens: 12 }),
          { jobId: `job-once-${index}` },
        ),
      ),
    );
    const results = await Promise.all(
      questions.map(
        async (_question, index) =>
          (await producer.result(TEST_MODEL_ID, `job-once-${index}`)) as GenerateResult,
      ),
    );
    // All four ran at once: each started before any finished (one after another, the cache alone
    // would give the same counts).
    const jobs = await Promise.all(
      questions.map((_question, index) =>
        producer.queue(TEST_MODEL_ID).getJob(`job-once-${index}`),
      ),
    );
    const firstFinished = Math.min(...jobs.map((job) => job?.finishedOn ?? 0));
    for (const job of jobs) expect(job?.processedOn ?? Infinity).toBeLessThan(firstFinished);
    // One computed the 640-token prefix (5 blocks of 128), the other three started from its state.
    expect(results.map((result) => result.usage.cachedTokens).sort((a, b) => a - b)).toEqual([
      0, 640, 640, 640,
    ]);
    for (const [index, question] of questions.entries()) {
      expect(results[index]?.choices[0]?.text).toBe(
        await referenceText(`${shared}${question}`, 12, 77),
      );
    }
    expect(await prefixStats()).toMatchObject({ hits: 3, misses: 1 });
  });

  it('computes the prompt prefix of n choices once', async () => {
    fresh('prefix-choices');
    await spawn({ PREFIX_BLOCK_TOKENS: '128' });
    const prompt = `${'A shared system prompt that many requests start with. '.repeat(12)}Go?`;
    await producer.add(
      JobName.Generate,
      generatePayload(prompt, { ...seeded, max_tokens: 12 }, { n: 3 }),
      { jobId: 'job-choices' },
    );
    const result = (await producer.result(TEST_MODEL_ID, 'job-choices')) as GenerateResult;
    // The three choices start together: one computes the 640-token prefix, two wait for it.
    expect(await prefixStats()).toMatchObject({ hits: 2, misses: 1 });
    expect(result.choices[0]?.text).toBe(await referenceText(prompt, 12, 77));
  });

  it('keeps a job for a model no worker serves waiting until such a worker starts', async () => {
    fresh('waiting');
    await spawn();
    await producer.add(
      JobName.Generate,
      {
        ...generatePayload('Other model', { temperature: 0, max_tokens: 5 }),
        model: 'other-model',
      },
      { jobId: 'job-other' },
    );
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await (await producer.queue('other-model').getJob('job-other'))?.getState()).toBe(
      'waiting',
    );
    const otherDir = await mkdtemp(join(tmpdir(), 'dijiang-other-'));
    await createPresetBundle(otherDir, 'tiny', { id: 'other-model', seed: 3 });
    await spawn({ MODEL_DIR: otherDir });
    const result = (await producer.result('other-model', 'job-other')) as GenerateResult;
    expect(result.choices[0]?.finishReason).toBe('length');
    expect(result.usage.completionTokens).toBe(5);
  });

  it('fails a job with invalid data at once, without retries', async () => {
    fresh('invalid');
    await spawn();
    const job = await producer
      .queue(TEST_MODEL_ID)
      .add(
        JobName.Generate,
        { model: TEST_MODEL_ID, input: { text: 'x' }, sampling: { temperature: 9 } },
        { jobId: 'job-bad', attempts: 3 },
      );
    await waitFor(async () => (await job.getState()) === 'failed', { message: 'the job to fail' });
    const failed = await producer.queue(TEST_MODEL_ID).getJob('job-bad');
    expect(failed?.failedReason).toMatch(/invalid generate job data/);
    expect(failed?.attemptsMade).toBe(1);
  });
});
