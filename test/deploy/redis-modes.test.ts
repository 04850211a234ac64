import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { JobName, redisKeys, type GenerateResult } from '#contracts';
import { requestCancel } from '#cluster';
import type { ServiceProcess } from '#processes';
import {
  startWorker,
  TEST_MODEL_ID,
  uniqueTaggedPrefix,
  type RedisEndpoint,
  type TestGateway,
} from '#testing';
import { Keys, startTestGateway } from '../gateway/support/harness.js';
import { waitFor } from '../support/wait.js';
import { generatePayload, indexesByChoice, TestProducer } from '../worker/support.js';
import {
  batchOutputTexts,
  batchRequests,
  ReferenceGenerator,
  submitBatch,
  waitForBatch,
  type BatchRequest,
} from './support.js';

/**
 * The key scenarios through real gateway and worker processes, on a single Redis and on a
 * three-primary Redis Cluster (the run's, from the global setup): completions, a batch, the
 * prefix cache, a cancellation and a resume after SIGKILL. On the cluster these run every Lua script and
 * multi-key command of the job path (BullMQ's, the stream end, token charging, the prefix cache's
 * claims and LRU, batch transitions, file and job MULTIs): each must keep its keys in one slot,
 * which the hash-tagged prefix gives. The oracle is the same bundle run in-process by the engine.
 */

const single = inject('redisUrl');
const modes: [string, RedisEndpoint][] = [
  ['a single Redis', { env: { REDIS_URL: single }, target: { mode: 'single', url: single } }],
  ['a 3-primary Redis Cluster', inject('redisCluster')],
];

/** Seeded sampling with end-of-text banned, as the reference generator samples. */
function samplingOf(request: BatchRequest) {
  return {
    temperature: 0.8,
    top_p: 0.95,
    seed: request.seed,
    logit_bias: { '256': -100 },
    max_tokens: request.maxTokens,
  };
}

describe.each(modes)('key scenarios on %s', (mode, endpoint) => {
  const prefix = uniqueTaggedPrefix('modes');
  let reference: ReferenceGenerator;
  let gateway: TestGateway;
  let producer: TestProducer;
  let openai: OpenAI;
  const workers: ServiceProcess[] = [];
  const spawnWorker = async (id: string): Promise<ServiceProcess> => {
    const worker = await startWorker(endpoint, {
      QUEUE_PREFIX: prefix,
      WORKER_ID: id,
      PREFIX_BLOCK_TOKENS: '128',
      CHECKPOINT_EVERY_TOKENS: '8',
    });
    workers.push(worker);
    return worker;
  };

  beforeAll(async () => {
    reference = await ReferenceGenerator.start();
    // Rate limits on, so that their MULTI runs too.
    gateway = await startTestGateway(endpoint, prefix, { RATE_LIMIT_RPM: '100000' });
    await spawnWorker('modes-a');
    producer = new TestProducer(endpoint.target, prefix);
    openai = new OpenAI({ apiKey: Keys.alice, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
  }, 60_000);
  afterAll(async () => {
    await producer.close();
    await Promise.all([
      ...workers.splice(0).map((worker) => worker.stop('SIGKILL')),
      gateway.service.stop('SIGKILL'),
    ]);
    await reference.close();
  });

  it('answers completions, streamed or not, with the seeded text; charges their tokens', async () => {
    const request = { customId: 'c', prompt: 'Once upon a time', seed: 5, maxTokens: 24 };
    const expected = (await reference.run(request)).text;
    const body = { model: TEST_MODEL_ID, prompt: request.prompt, ...samplingOf(request) };
    const completion = await openai.completions.create(body);
    expect(completion.choices[0]?.text).toBe(expected);
    let streamed = '';
    for await (const chunk of await openai.completions.create({ ...body, stream: true })) {
      streamed += chunk.choices[0]?.text ?? '';
    }
    expect(streamed).toBe(expected);
    const usage = completion.usage;
    const perRequest = (usage?.prompt_tokens ?? 0) + (usage?.completion_tokens ?? 0);
    expect(usage?.completion_tokens).toBe(24);
    await waitFor(async () => (await producer.chargedTokens('alice')) === 2 * perRequest, {
      message: `both requests' ${2 * perRequest} tokens charged to the tenant`,
    });
  });

  it('completes a batch with every line once, equal to the engine', async () => {
    const requests = batchRequests(4, 16);
    const batchId = await submitBatch(openai, requests);
    const batch = await waitForBatch(openai, batchId, 60_000);
    expect(batch.request_counts).toEqual({ total: 4, completed: 4, failed: 0 });
    const texts: [string, string | undefined][] = [];
    for (const request of requests) {
      texts.push([request.customId, (await reference.run(request)).text]);
    }
    expect(await batchOutputTexts(openai, batch)).toEqual(texts);
  });

  it('reuses a prompt prefix from the prefix cache, with the same text', async () => {
    const shared = 'A shared system prompt that many requests start with. '.repeat(12);
    const run = async (jobId: string, question: string): Promise<GenerateResult> => {
      const request = { customId: jobId, prompt: `${shared}${question}`, seed: 77, maxTokens: 20 };
      await producer.add(JobName.Generate, generatePayload(request.prompt, samplingOf(request)), {
        jobId,
      });
      const result = (await producer.result(TEST_MODEL_ID, jobId)) as GenerateResult;
      expect(result.choices[0]?.text, jobId).toBe((await reference.run(request)).text);
      return result;
    };
    expect((await run('prefix-1', 'First question?')).usage.cachedTokens).toBe(0);
    // The prompt is 648 + 16 bytes: the 640-token prefix (5 blocks of 128) comes from the cache.
    expect((await run('prefix-2', 'Second question?')).usage.cachedTokens).toBe(640);
  });

  it('cancels a running job from another process (pub/sub across the cluster bus)', async () => {
    const request = { customId: 'cancel', prompt: 'Cancel me', seed: 77, maxTokens: 5000 };
    await producer.add(JobName.Generate, generatePayload(request.prompt, samplingOf(request)), {
      jobId: 'job-cancel',
    });
    await waitFor(async () => (await producer.tokenCount('job-cancel')) >= 20, {
      message: '20 tokens streamed',
    });
    await requestCancel(producer.redis, redisKeys(prefix), 'job-cancel');
    const result = (await producer.result(TEST_MODEL_ID, 'job-cancel')) as GenerateResult;
    expect(result.choices[0]?.finishReason).toBe('cancelled');
    expect(await producer.tokenCount('job-cancel')).toBeLessThan(request.maxTokens);
  });

  // On a single Redis this is worker.test.ts's "resumes on another worker after SIGKILL
  // mid-generation"; it costs a lock expiry (about 10 s), so it runs here for the cluster only.
  if (mode.includes('Cluster'))
    it('resumes on another worker after SIGKILL mid-generation, with identical output', async () => {
      const request = { customId: 'kill', prompt: 'Resume me', seed: 77, maxTokens: 1500 };
      await producer.add(JobName.Generate, generatePayload(request.prompt, samplingOf(request)), {
        jobId: 'job-kill',
      });
      await waitFor(async () => (await producer.tokenCount('job-kill')) >= 100, {
        message: '100 tokens streamed',
      });
      await workers[0]?.stop('SIGKILL');
      expect(await producer.tokenCount('job-kill')).toBeLessThan(request.maxTokens);
      await spawnWorker('modes-b');
      const result = (await producer.result(TEST_MODEL_ID, 'job-kill')) as GenerateResult;
      expect(result.choices[0]?.text).toBe((await reference.run(request)).text);
      // A de-duplicating reader sees each index once, in order.
      const firstSeen = [...new Set(indexesByChoice(await producer.stream('job-kill')).get(0))];
      expect(firstSeen).toEqual(Array.from({ length: request.maxTokens }, (_unused, i) => i));
    });

  if (mode.includes('Cluster'))
    it('runs on a real cluster: a script over keys of two slots is refused (CROSSSLOT)', async () => {
      // The oracle that the cluster shards at all: without a hash tag these two keys live in
      // different slots, so the script above would have failed had the prefix not been tagged.
      await expect(
        producer.redis.eval("return redis.call('MGET', KEYS[1], KEYS[2])", 2, 'a', 'b'),
      ).rejects.toThrow(/CROSSSLOT/);
    });
});
