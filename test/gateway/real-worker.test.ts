import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ServiceProcess } from '#processes';
import { startWorker, uniquePrefix, type TestGateway } from '#testing';
import { waitFor } from '../support/wait.js';
import {
  client,
  dijiang,
  expectError,
  greedyGenerate,
  Keys,
  startTestGateway,
} from './support/harness.js';

/**
 * End to end: the official `openai` client against a gateway and a real worker process serving
 * a tiny model bundle. The oracle for greedy output is the same bundle run in-process by
 * `dijiang generate` (no Redis, no gateway).
 */
describe('gateway with a real worker', () => {
  const redisUrl = inject('redisUrl');
  const prefix = uniquePrefix('gw-e2e');
  const modelDir = join(mkdtempSync(join(tmpdir(), 'dijiang-model-')), 'tiny');
  let model: string;
  let gateway: TestGateway;
  let worker: ServiceProcess;
  let openai: OpenAI;

  const greedyOracle = (prompt: string, maxTokens: number): string =>
    greedyGenerate(modelDir, prompt, maxTokens);

  beforeAll(async () => {
    dijiang(['model', 'create', '--preset', 'tiny', '--out', modelDir]);
    worker = await startWorker(redisUrl, {
      QUEUE_PREFIX: prefix,
      MODEL_DIR: modelDir,
      WORKER_ID: 'e2e-worker',
    });
    gateway = await startTestGateway(redisUrl, prefix);
    openai = new OpenAI({ apiKey: Keys.alice, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
    const models = await openai.models.list();
    model = models.data[0]?.id ?? '';
  });
  afterAll(async () => {
    await gateway.service.stop();
    await worker.stop();
  });

  it('serves the bundle: greedy completions equal in-process generation, streamed or not', async () => {
    expect(model).not.toBe('');
    const expected = greedyOracle('Hello', 8);
    const completion = await openai.completions.create({
      model,
      prompt: 'Hello',
      max_tokens: 8,
      temperature: 0,
    });
    expect(completion.choices[0]?.text).toBe(expected);
    expect(completion.choices[0]?.finish_reason).toBe('length');
    // The bundle's tokenizer is byte-level: one prompt token per byte.
    expect(completion.usage).toMatchObject({
      prompt_tokens: 5,
      completion_tokens: 8,
      total_tokens: 13,
    });

    const stream = await openai.completions.create({
      model,
      prompt: 'Hello',
      max_tokens: 8,
      temperature: 0,
      stream: true,
    });
    let streamed = '';
    for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? '';
    expect(streamed).toBe(expected);
  });

  it('answers chat, streamed, with usage in the last chunk', async () => {
    const stream = await openai.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'Hi' }],
      max_completion_tokens: 5,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      usage = chunk.usage;
    }
    expect(text).toBe(greedyOracle('<|user|>\nHi\n<|assistant|>\n', 5));
    expect(usage).toMatchObject({
      prompt_tokens: Buffer.byteLength('<|user|>\nHi\n<|assistant|>\n'),
      completion_tokens: 5,
    });
  });

  it('runs a batch: create, poll, download output and errors joined by custom_id', async () => {
    const lines = [
      JSON.stringify({
        custom_id: 'one',
        method: 'POST',
        url: '/v1/completions',
        body: { model, prompt: 'Hello', max_tokens: 8, temperature: 0 },
      }),
      'not json',
      JSON.stringify({
        custom_id: 'two',
        method: 'POST',
        url: '/v1/completions',
        body: { model, prompt: 'Hi', max_tokens: 3, temperature: 0 },
      }),
    ];
    const file = await openai.files.create({
      file: await toFile(Buffer.from(lines.join('\n')), 'batch.jsonl'),
      purpose: 'batch',
    });
    const created = await openai.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/completions',
      completion_window: '24h',
    });
    let batch = created;
    await waitFor(
      async () => {
        batch = await openai.batches.retrieve(created.id);
        return batch.status === 'completed';
      },
      { timeoutMs: 30_000, message: 'the batch to complete' },
    );
    expect(batch.request_counts).toEqual({ total: 3, completed: 2, failed: 1 });
    const output = (await (await openai.files.content(batch.output_file_id ?? '')).text())
      .trim()
      .split('\n')
      .map(
        (line) => JSON.parse(line) as { custom_id: string; response: { body: OpenAI.Completion } },
      );
    const texts = Object.fromEntries(
      output.map((line) => [line.custom_id, line.response.body.choices[0]?.text]),
    );
    expect(texts).toEqual({ one: greedyOracle('Hello', 8), two: greedyOracle('Hi', 3) });
    const errors = (await (await openai.files.content(batch.error_file_id ?? '')).text())
      .trim()
      .split('\n');
    expect(errors).toHaveLength(1);
    expect(JSON.parse(errors[0] ?? '')).toMatchObject({
      custom_id: null,
      response: { status_code: 400 },
    });
  });

  it('charges the tokens of async jobs to the tenant: past RATE_LIMIT_TPM the next request is 429', async () => {
    const limited = await startTestGateway(redisUrl, prefix, {
      API_KEYS: 'erin:sk-erin-0123456789,frank:sk-frank-0123456789',
      RATE_LIMIT_TPM: '12',
    });
    try {
      const erin = client(limited.url, 'sk-erin-0123456789');
      const text = 'twelve bytes';
      const submitted = await erin.post('/v1/jobs', { type: 'score', model, prompt: text });
      expect(submitted.status).toBe(200);
      const jobId = (submitted.body as { id: string }).id;
      await waitFor(
        async () =>
          ((await erin.get(`/v1/jobs/${jobId}`)).body as { status: string }).status === 'completed',
        { timeoutMs: 30_000, message: 'the score job to complete' },
      );
      // The worker charged the 12 scored tokens (byte tokenizer): erin's budget is spent, and no
      // client ever read the job's result through a completion endpoint. Reading is still allowed.
      expectError(await erin.post('/v1/jobs', { type: 'score', model, prompt: text }), 429, {
        code: 'rate_limit_tokens',
      });
      expect((await erin.get(`/v1/jobs/${jobId}`)).body).toMatchObject({
        status: 'completed',
        result: { tokens: 12 },
      });
      const frank = client(limited.url, 'sk-frank-0123456789');
      expect((await frank.post('/v1/jobs', { type: 'score', model, prompt: text })).status).toBe(
        200,
      );
    } finally {
      await limited.service.stop();
    }
  });
});
