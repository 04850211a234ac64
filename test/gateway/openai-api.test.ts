import { Ajv2020 } from 'ajv/dist/2020.js';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniquePrefix, type TestGateway } from '#testing';
import { waitFor } from '../support/wait.js';
import { client, isOpenAiError, Keys, sseEvents, startTestGateway } from './support/harness.js';
import {
  expectedText,
  startScriptedWorker,
  type ScriptedWorker,
} from './support/scripted-worker.js';

/**
 * The OpenAI-compatible surface, through the official `openai` client, against a gateway process
 * and a worker that speaks the cluster's contract with a scripted model (known output).
 */
describe('OpenAI-compatible API', () => {
  const redisUrl = inject('redisUrl');
  const prefix = uniquePrefix('gw-openai');
  const model = 'scripted';
  let gateway: TestGateway;
  let worker: ScriptedWorker;
  let openai: OpenAI;

  beforeAll(async () => {
    worker = await startScriptedWorker(redisUrl, prefix, { model });
    gateway = await startTestGateway(redisUrl, prefix);
    openai = new OpenAI({ apiKey: Keys.alice, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
  });
  afterAll(async () => {
    await gateway.service.stop();
    await worker.stop();
  });

  it('lists the models live workers serve', async () => {
    const models = await openai.models.list();
    expect(models.data.map((entry) => entry.id)).toEqual([model]);
    expect(models.data[0]).toMatchObject({ object: 'model', owned_by: 'dijiang' });
    expect((await openai.models.retrieve(model)).id).toBe(model);
  });

  it('answers a completion with OpenAI fields and usage', async () => {
    const completion = await openai.completions.create({
      model,
      prompt: 'Hello',
      max_tokens: 4,
      n: 2,
    });
    expect(completion.object).toBe('text_completion');
    expect(completion.id).toMatch(/^cmpl-/);
    expect(
      completion.choices.map((choice) => [choice.index, choice.text, choice.finish_reason]),
    ).toEqual([
      [0, expectedText(0, 4), 'length'],
      [1, expectedText(1, 4), 'length'],
    ]);
    expect(completion.usage).toEqual({
      prompt_tokens: 5,
      completion_tokens: 8,
      total_tokens: 13,
      prompt_tokens_details: { cached_tokens: 0 },
    });
  });

  it('answers a chat completion rendered through the default template', async () => {
    const chat = await openai.chat.completions.create({
      model,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hi' },
      ],
      max_completion_tokens: 3,
      logprobs: true,
      top_logprobs: 2,
    });
    expect(chat.object).toBe('chat.completion');
    const choice = chat.choices[0];
    expect(choice?.message).toEqual({
      role: 'assistant',
      content: expectedText(0, 3),
      refusal: null,
    });
    // The scripted model counts one token per prompt character.
    const rendered = '<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n';
    expect(chat.usage?.prompt_tokens).toBe(rendered.length);
    expect(choice?.logprobs?.content?.[0]).toEqual({
      token: 'c0t0 ',
      logprob: -0.5,
      bytes: [...Buffer.from('c0t0 ')],
      top_logprobs: [
        { token: 'alt0', logprob: -1, bytes: [...Buffer.from('alt0')] },
        { token: 'alt1', logprob: -2, bytes: [...Buffer.from('alt1')] },
      ],
    });
  });

  it('streams chat chunks in OpenAI format, with usage last when asked', async () => {
    const stream = await openai.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'Hi' }],
      max_completion_tokens: 3,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]?.choices[0]?.delta).toEqual({ role: 'assistant', content: '' });
    expect(new Set(chunks.map((chunk) => chunk.object))).toEqual(
      new Set(['chat.completion.chunk']),
    );
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
    const text = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(expectedText(0, 3));
    const finish = chunks.at(-2);
    expect(finish?.choices[0]?.finish_reason).toBe('length');
    expect(chunks.slice(0, -1).every((chunk) => chunk.usage === null)).toBe(true);
    const last = chunks.at(-1);
    expect(last?.choices).toEqual([]);
    expect(last?.usage).toMatchObject({
      completion_tokens: 3,
      total_tokens: (last?.usage?.prompt_tokens ?? 0) + 3,
    });
  });

  it('streams legacy completions without usage chunks unless asked', async () => {
    const stream = await openai.completions.create({
      model,
      prompt: 'x',
      max_tokens: 2,
      stream: true,
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.map((chunk) => chunk.choices[0]?.text).join('')).toBe(expectedText(0, 2));
    expect(chunks.every((chunk) => !('usage' in chunk))).toBe(true);
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('length');
  });

  it('ends an SSE stream with data: [DONE] and uses stream entry ids as event ids', async () => {
    const response = await client(gateway.url, Keys.alice).raw('/v1/completions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model, prompt: 'x', max_tokens: 2, stream: true }),
    });
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = [];
    for await (const event of sseEvents(response)) events.push(event);
    expect(events.at(-1)?.data).toBe('[DONE]');
    expect(events.slice(0, -1).every((event) => /^\d+-\d+$/.test(event.id ?? ''))).toBe(true);
  });

  it('refuses unsupported OpenAI features by name', async () => {
    await expect(
      openai.chat.completions.create({
        model,
        messages: [{ role: 'user', content: 'Hi' }],
        tools: [{ type: 'function', function: { name: 'f' } }],
      }),
    ).rejects.toMatchObject({ status: 400, param: 'tools' });
    await expect(openai.completions.create({ model, prompt: [1, 2, 3] })).rejects.toMatchObject({
      status: 400,
      param: 'prompt',
    });
  });

  it('says model_not_found for a model no worker serves', async () => {
    await expect(openai.completions.create({ model: 'gpt-4', prompt: 'x' })).rejects.toMatchObject({
      status: 404,
      code: 'model_not_found',
      param: 'model',
    });
  });

  it('uploads files and runs a batch: output and errors joined by custom_id', async () => {
    const lines = [
      {
        custom_id: 'a',
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model, messages: [{ role: 'user', content: 'A' }], max_tokens: 2 },
      },
      '{"custom_id": "broken", ',
      {
        custom_id: 'b',
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model, messages: [{ role: 'user', content: 'B' }], max_tokens: 3 },
      },
      {
        custom_id: 'bad-temp',
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model, messages: [{ role: 'user', content: 'C' }], temperature: 9 },
      },
      {
        custom_id: 'other-model',
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model: 'nope', messages: [{ role: 'user', content: 'D' }] },
      },
      {
        custom_id: 'a',
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model, messages: [{ role: 'user', content: 'E' }] },
      },
      {
        custom_id: 'wrong-url',
        method: 'POST',
        url: '/v1/completions',
        body: { model, prompt: 'F' },
      },
    ];
    const jsonl = lines
      .map((line) => (typeof line === 'string' ? line : JSON.stringify(line)))
      .join('\n');
    const file = await openai.files.create({
      file: await toFile(Buffer.from(jsonl), 'input.jsonl'),
      purpose: 'batch',
    });
    expect(file).toMatchObject({
      object: 'file',
      purpose: 'batch',
      bytes: Buffer.byteLength(jsonl),
      filename: 'input.jsonl',
    });
    expect(await (await openai.files.content(file.id)).text()).toBe(jsonl);

    const created = await openai.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
      metadata: { run: 't1' },
    });
    expect(created).toMatchObject({
      object: 'batch',
      status: 'validating',
      metadata: { run: 't1' },
    });
    let batch = created;
    await waitFor(
      async () => {
        batch = await openai.batches.retrieve(created.id);
        return batch.status === 'completed';
      },
      { timeoutMs: 20_000, message: 'the batch to complete' },
    );
    expect(batch.request_counts).toEqual({ total: 7, completed: 2, failed: 5 });
    expect(batch.in_progress_at).toBeGreaterThan(0);
    expect(batch.completed_at).toBeGreaterThan(0);
    const output = (await (await openai.files.content(batch.output_file_id ?? '')).text())
      .trim()
      .split('\n')
      .map(
        (line) =>
          JSON.parse(line) as {
            custom_id: string;
            response: {
              status_code: number;
              body: { choices: { message: { content: string } }[] };
            };
            error: unknown;
          },
      );
    expect(
      Object.fromEntries(
        output.map((line) => [line.custom_id, line.response.body.choices[0]?.message.content]),
      ),
    ).toEqual({
      a: expectedText(0, 2),
      b: expectedText(0, 3),
    });
    expect(output.every((line) => line.response.status_code === 200 && line.error === null)).toBe(
      true,
    );
    const errors = (await (await openai.files.content(batch.error_file_id ?? '')).text())
      .trim()
      .split('\n')
      .map(
        (line) =>
          JSON.parse(line) as {
            custom_id: string | null;
            response: {
              status_code: number;
              body: { error: { param: string | null; code: string | null } };
            };
          },
      );
    const byId = Object.fromEntries(errors.map((line) => [String(line.custom_id), line.response]));
    expect(Object.keys(byId).sort()).toEqual(['a', 'bad-temp', 'null', 'other-model', 'wrong-url']);
    expect(byId['bad-temp']).toMatchObject({
      status_code: 400,
      body: { error: { param: 'temperature' } },
    });
    expect(byId['other-model']).toMatchObject({
      status_code: 404,
      body: { error: { code: 'model_not_found' } },
    });
    expect(byId.a).toMatchObject({
      status_code: 400,
      body: { error: { code: 'duplicate_custom_id' } },
    });
    expect(byId['wrong-url']).toMatchObject({
      status_code: 400,
      body: { error: { param: 'url' } },
    });
    // An unparseable line has no custom_id to join on.
    expect(byId.null).toMatchObject({
      status_code: 400,
      body: { error: { code: 'invalid_json' } },
    });
    expect(errors.every((line) => isOpenAiError(line.response.body))).toBe(true);

    const page = await openai.batches.list({ limit: 10 });
    expect(page.data.map((entry) => entry.id)).toContain(created.id);
  });

  it('answers bodies that validate against the response schemas /docs publishes', async () => {
    interface Operation {
      responses: Record<string, { content?: Record<string, { schema?: object }> }>;
    }
    const spec = (await (await fetch(`${gateway.url}/docs/openapi.json`)).json()) as {
      paths: Record<string, Record<string, Operation>>;
      components: { schemas: { Error: object } };
    };
    // OpenAPI 3.1 schemas are JSON Schema 2020-12.
    const ajv = new Ajv2020({ allErrors: true });
    const documented = (path: string, method: string) => {
      const schema =
        spec.paths[path]?.[method]?.responses['200']?.content?.['application/json']?.schema;
      if (schema === undefined) throw new Error(`${method} ${path} documents no JSON body`);
      const validate = ajv.compile(schema);
      return (body: unknown): string => {
        validate(body);
        return ajv.errorsText(validate.errors);
      };
    };
    const valid = 'No errors';
    const alice = client(gateway.url, Keys.alice);

    const models = await alice.get('/v1/models');
    expect(documented('/v1/models', 'get')(models.body)).toBe(valid);

    const completion = await alice.post('/v1/completions', {
      model,
      prompt: 'Hello',
      max_tokens: 3,
      logprobs: 2,
    });
    const completionBody = documented('/v1/completions', 'post');
    expect(completionBody(completion.body)).toBe(valid);
    // The check can fail: a body without usage, or with a field the schema does not know, fails.
    const withoutUsage: Record<string, unknown> = { ...(completion.body as object) };
    delete withoutUsage.usage;
    expect(completionBody(withoutUsage)).toMatch(/usage/);
    expect(completionBody({ ...(completion.body as object), surprise: 1 })).not.toBe(valid);

    const chat = await alice.post('/v1/chat/completions', {
      model,
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 3,
      logprobs: true,
      top_logprobs: 1,
    });
    expect(documented('/v1/chat/completions', 'post')(chat.body)).toBe(valid);

    const job = await alice.post<{ id: string }>('/v1/jobs', {
      type: 'generate',
      model,
      prompt: 'Hello',
      max_tokens: 3,
    });
    expect(documented('/v1/jobs', 'post')(job.body)).toBe(valid);
    await waitFor(
      async () =>
        (await alice.get<{ status: string }>(`/v1/jobs/${job.body.id}`)).body.status ===
        'completed',
      { timeoutMs: 10_000, message: 'the job to complete' },
    );
    const finished = await alice.get(`/v1/jobs/${job.body.id}`);
    expect(documented('/v1/jobs/{id}', 'get')(finished.body)).toBe(valid);

    expect(documented('/v1/files', 'get')((await alice.get('/v1/files')).body)).toBe(valid);

    const missing = await alice.get('/v1/files/file-none');
    expect(missing.status).toBe(404);
    const validateError = ajv.compile(spec.components.schemas.Error);
    expect(validateError(missing.body)).toBe(true);
  });

  it('publishes OpenAPI docs generated from the routes and Prometheus metrics', async () => {
    const spec = (await (await fetch(`${gateway.url}/docs/openapi.json`)).json()) as {
      paths: Record<
        string,
        Record<
          string,
          {
            requestBody?: {
              content: Record<string, { schema: { properties?: Record<string, unknown> } }>;
            };
          }
        >
      >;
    };
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining([
        '/v1/completions',
        '/v1/chat/completions',
        '/v1/batches/{id}/cancel',
        '/v1/jobs/{id}/events',
        '/v1/states/{id}',
      ]),
    );
    const completionBody =
      spec.paths['/v1/completions']?.post?.requestBody?.content['application/json']?.schema;
    expect(Object.keys(completionBody?.properties ?? {})).toEqual(
      expect.arrayContaining(['model', 'prompt', 'temperature', 'stream_options']),
    );
    expect((await fetch(`${gateway.url}/docs/`)).headers.get('content-type')).toMatch(/text\/html/);

    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    const sample = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1]);
    // Every completion above went through this gateway and produced tokens.
    expect(
      sample(`dijiang_time_to_first_token_seconds_count\\{model="${model}"\\}`),
    ).toBeGreaterThan(0);
    expect(sample(`dijiang_completion_tokens_total\\{model="${model}"\\}`)).toBeGreaterThan(0);
    expect(sample('dijiang_live_workers')).toBe(1);
    expect(metrics).toMatch(
      /^dijiang_queue_jobs\{queue="model\.scripted",state="completed"\} \d+/m,
    );
    // Nothing waits once every request above has been answered.
    expect(sample(`dijiang_queue_waiting_output_tokens\\{model="${model}"\\}`)).toBe(0);
    expect(sample(`dijiang_queue_waiting_input_bytes\\{model="${model}"\\}`)).toBe(0);
    expect(metrics).toMatch(
      /^dijiang_http_request_duration_seconds_count\{method="POST",route="\/v1\/completions",status="200"\} \d+/m,
    );
  });
});
