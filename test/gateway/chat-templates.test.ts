import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ServiceProcess } from '#processes';
import { startWorker, uniquePrefix, type TestGateway } from '#testing';
import { waitFor } from '../support/wait.js';
import { dijiang, greedyGenerate, Keys, startTestGateway } from './support/harness.js';

/**
 * ChatML, as models on the Hugging Face Hub ship it, behind a guard that refuses a conversation
 * that does not end with the user (the way templates refuse what they cannot format).
 */
const TEMPLATE =
  "{% if messages[-1]['role'] != 'user' %}{{ raise_exception('The last message must come from the user.') }}{% endif %}" +
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/**
 * End to end: a worker serves two bundles of the same weights, one built with a chat template
 * (`dijiang model create --chat-template`) and one without. Chat requests to the first are
 * rendered with its template, to the second with the default format: the oracle is the expected
 * prompt text, written out here, run in-process by `dijiang generate` (byte tokenizer: one prompt
 * token per byte).
 */
describe('chat templates from model bundles', () => {
  const redisUrl = inject('redisUrl');
  const prefix = uniquePrefix('gw-chat-tpl');
  const root = mkdtempSync(join(tmpdir(), 'dijiang-chat-'));
  const modelsDir = join(root, 'models');
  const templated = 'tiny-chatml';
  const plain = 'tiny-plain';
  const messages: OpenAI.ChatCompletionMessageParam[] = [
    { role: 'developer', content: 'Be brief.' },
    { role: 'user', content: 'Hi' },
  ];
  const chatmlPrompt =
    '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n';
  const defaultPrompt = '<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n';
  let created: string;
  let gateway: TestGateway;
  let worker: ServiceProcess;
  let openai: OpenAI;
  let redis: Redis;

  const greedyOracle = (prompt: string, maxTokens: number): string =>
    greedyGenerate(join(modelsDir, templated), prompt, maxTokens);

  beforeAll(async () => {
    const templateFile = join(root, 'chatml.jinja');
    writeFileSync(templateFile, TEMPLATE);
    created = dijiang([
      'model',
      'create',
      '--preset',
      'tiny',
      '--id',
      templated,
      '--out',
      join(modelsDir, templated),
      '--chat-template',
      templateFile,
    ]);
    dijiang([
      'model',
      'create',
      '--preset',
      'tiny',
      '--id',
      plain,
      '--out',
      join(modelsDir, plain),
    ]);
    redis = new Redis(redisUrl);
    worker = await startWorker(redisUrl, {
      QUEUE_PREFIX: prefix,
      MODEL_DIR: modelsDir,
      WORKER_ID: 'chat-template-worker',
    });
    gateway = await startTestGateway(redisUrl, prefix);
    openai = new OpenAI({ apiKey: Keys.alice, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
  });
  afterAll(async () => {
    await gateway.service.stop();
    await worker.stop();
    await redis.quit();
  });

  it("the worker publishes each model's template (or that it has none) in Redis", async () => {
    expect(created).toContain(`chat template bundled from ${join(root, 'chatml.jinja')}`);
    expect(JSON.parse((await redis.get(`${prefix}:model:${templated}:chat`)) ?? 'null')).toEqual({
      template: TEMPLATE,
    });
    expect(JSON.parse((await redis.get(`${prefix}:model:${plain}:chat`)) ?? 'null')).toEqual({
      template: null,
    });
  });

  it("renders chat with the bundle's template, and with the default format without one", async () => {
    const chat = await openai.chat.completions.create({
      model: templated,
      messages,
      max_completion_tokens: 5,
      temperature: 0,
    });
    expect(chat.usage?.prompt_tokens).toBe(Buffer.byteLength(chatmlPrompt));
    expect(chat.choices[0]?.message.content).toBe(greedyOracle(chatmlPrompt, 5));

    const fallback = await openai.chat.completions.create({
      model: plain,
      messages,
      max_completion_tokens: 5,
      temperature: 0,
    });
    expect(fallback.usage?.prompt_tokens).toBe(Buffer.byteLength(defaultPrompt));
    expect(fallback.choices[0]?.message.content).toBe(greedyOracle(defaultPrompt, 5));
  });

  it("answers 400 about 'messages' when the template refuses the conversation", async () => {
    const refused = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${Keys.alice}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({
        model: templated,
        messages: [...messages, { role: 'assistant', content: 'Hello' }],
      }),
    });
    expect(refused.status).toBe(400);
    expect(await refused.json()).toEqual({
      error: {
        message:
          "The model's chat template cannot render these messages: The last message must come from the user.",
        type: 'invalid_request_error',
        param: 'messages',
        code: null,
      },
    });
  });

  it('renders batch chat lines with the template too', async () => {
    const line = (customId: string, body: Record<string, unknown>): string =>
      JSON.stringify({ custom_id: customId, method: 'POST', url: '/v1/chat/completions', body });
    const file = await openai.files.create({
      file: await toFile(
        Buffer.from(
          [
            line('good', { model: templated, messages, max_tokens: 3, temperature: 0 }),
            line('refused', {
              model: templated,
              messages: [{ role: 'assistant', content: 'Hello' }],
            }),
          ].join('\n'),
        ),
        'chat.jsonl',
      ),
      purpose: 'batch',
    });
    const batchCreated = await openai.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    let batch = batchCreated;
    await waitFor(
      async () => {
        batch = await openai.batches.retrieve(batchCreated.id);
        return batch.status === 'completed';
      },
      { timeoutMs: 30_000, message: 'the batch to complete' },
    );
    expect(batch.request_counts).toEqual({ total: 2, completed: 1, failed: 1 });
    const [output] = (await (await openai.files.content(batch.output_file_id ?? '')).text())
      .trim()
      .split('\n')
      .map(
        (text) =>
          JSON.parse(text) as { custom_id: string; response: { body: OpenAI.ChatCompletion } },
      );
    expect(output?.custom_id).toBe('good');
    expect(output?.response.body.usage?.prompt_tokens).toBe(Buffer.byteLength(chatmlPrompt));
    expect(output?.response.body.choices[0]?.message.content).toBe(greedyOracle(chatmlPrompt, 3));
    const [error] = (await (await openai.files.content(batch.error_file_id ?? '')).text())
      .trim()
      .split('\n');
    expect(JSON.parse(error ?? '')).toMatchObject({
      custom_id: 'refused',
      response: {
        status_code: 400,
        body: {
          error: {
            param: 'messages',
            message:
              "The model's chat template cannot render these messages: The last message must come from the user.",
          },
        },
      },
    });
  });
});
