import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { redisKeys } from '#contracts';
import { connectRedisOrFail, createLogger, createRedis, WorkerRegistry } from '#cluster';
import { appEntry, uniquePrefix, type TestGateway } from '#testing';
import { waitFor } from '../support/wait.js';
import { client, expectError, isOpenAiError, Keys, startTestGateway } from './support/harness.js';
import { startScriptedWorker, type ScriptedWorker } from './support/scripted-worker.js';

/** Registers a worker record that serves `model` but consumes nothing (jobs stay queued). */
async function idleWorker(
  redisUrl: string,
  prefix: string,
  model: string,
): Promise<WorkerRegistry> {
  const redis = createRedis(
    redisUrl,
    'commands',
    `idle-${model}`,
    createLogger('idle-worker', 'silent'),
  );
  await connectRedisOrFail(redis, redisUrl);
  const registry = new WorkerRegistry(
    redis,
    redisKeys(prefix),
    {
      id: `idle-${model}`,
      host: 'test',
      pid: process.pid,
      models: [model],
      capacity: 1,
      startedAt: new Date().toISOString(),
    },
    2000,
    createLogger('idle', 'silent'),
  );
  await registry.start();
  return registry;
}

describe('auth, tenants, validation and limits', () => {
  const redisUrl = inject('redisUrl');
  const prefix = uniquePrefix('gw-limits');
  let gateway: TestGateway;
  let worker: ScriptedWorker;
  const idle: WorkerRegistry[] = [];

  beforeAll(async () => {
    worker = await startScriptedWorker(redisUrl, prefix, { model: 'scripted' });
    idle.push(await idleWorker(redisUrl, prefix, 'idle'));
    gateway = await startTestGateway(redisUrl, prefix, {
      MAX_BODY_BYTES: '4096',
      MAX_DOCUMENT_BYTES: '1000',
      MAX_FILE_BYTES: '2000',
      MAX_QUEUE_DEPTH: '2',
      BATCH_MAX_LINES: '3',
      WORKER_WAIT_MS: '300',
    });
  });
  afterAll(async () => {
    await gateway.service.stop();
    await worker.stop();
    for (const registry of idle) await registry.stop();
  });

  it('requires a valid key on /v1 and an admin key on /admin', async () => {
    expectError(await client(gateway.url, undefined).get('/v1/models'), 401, {
      type: 'authentication_error',
    });
    expectError(await client(gateway.url, 'sk-wrong-key-0000').get('/v1/models'), 401, {
      code: 'invalid_api_key',
    });
    expect((await client(gateway.url, Keys.alice).get('/v1/models')).status).toBe(200);
    const anonymous = await client(gateway.url, undefined).get('/admin/queues');
    expectError(anonymous, 401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic/);
    expectError(await client(gateway.url, Keys.alice).get('/admin/queues'), 403, {
      code: 'admin_key_required',
    });
    const basic = Buffer.from(`ops:${Keys.admin}`).toString('base64');
    const dashboard = await fetch(`${gateway.url}/admin/queues`, {
      headers: { Authorization: `Basic ${basic}` },
    });
    expect(dashboard.status).toBe(200);
    expect(dashboard.headers.get('content-type')).toMatch(/text\/html/);
    // Health, metrics and docs stay open.
    expect((await fetch(`${gateway.url}/health/live`)).status).toBe(200);
  });

  it('answers every validation failure with a 400 naming the parameter', async () => {
    const alice = client(gateway.url, Keys.alice);
    const cases: [string, unknown, string | null][] = [
      ['/v1/completions', { prompt: 'x' }, 'model'],
      ['/v1/completions', { model: 'scripted' }, 'prompt'],
      ['/v1/completions', { model: 'scripted', prompt: 'x', temperature: 2.5 }, 'temperature'],
      ['/v1/completions', { model: 'scripted', prompt: 'x', top_p: 0 }, 'top_p'],
      ['/v1/completions', { model: 'scripted', prompt: 'x', n: 0 }, 'n'],
      ['/v1/completions', { model: 'scripted', prompt: 'x', max_tokens: 'ten' }, 'max_tokens'],
      [
        '/v1/completions',
        { model: 'scripted', prompt: 'x', stop: ['a', 'b', 'c', 'd', 'e'] },
        'stop',
      ],
      [
        '/v1/completions',
        { model: 'scripted', prompt: 'x', logit_bias: { abc: 1 } },
        'logit_bias.abc',
      ],
      [
        '/v1/completions',
        { model: 'scripted', prompt: 'x', presence_penalty: -3 },
        'presence_penalty',
      ],
      [
        '/v1/completions',
        { model: 'scripted', prompt: 'x', stream_options: { include_usage: true } },
        'stream_options',
      ],
      ['/v1/completions', { model: 'scripted', prompt: 'x', echo: true }, 'echo'],
      ['/v1/completions', { model: 'scripted', prompt: 'x', surprise: 1 }, 'surprise'],
      ['/v1/chat/completions', { model: 'scripted', messages: [] }, 'messages'],
      [
        '/v1/chat/completions',
        { model: 'scripted', messages: [{ role: 'wizard', content: 'x' }] },
        'messages[0].role',
      ],
      [
        '/v1/chat/completions',
        { model: 'scripted', messages: [{ role: 'user', content: [{ type: 'image_url' }] }] },
        'messages[0].content[0]',
      ],
      [
        '/v1/chat/completions',
        { model: 'scripted', messages: [{ role: 'user', content: 'x' }], top_logprobs: 2 },
        'top_logprobs',
      ],
      ['/v1/jobs', { type: 'summarize', model: 'scripted', prompt: 'x' }, 'type'],
      ['/v1/jobs', { type: 'score', model: 'scripted' }, 'prompt'],
      [
        '/v1/batches',
        { input_file_id: 'file-x', endpoint: '/v1/embeddings', completion_window: '24h' },
        'endpoint',
      ],
      [
        '/v1/batches',
        { input_file_id: 'file-x', endpoint: '/v1/completions', completion_window: '1h' },
        'completion_window',
      ],
      ['/v1/states', { model: 'scripted', prompt: 'x', ttl_seconds: -1 }, 'ttl_seconds'],
    ];
    for (const [path, body, param] of cases) {
      const reply = await alice.post(path, body);
      expect({
        path,
        body,
        status: reply.status,
        param: (reply.body as { error?: { param?: unknown } }).error?.param,
      }).toEqual({
        path,
        body,
        status: 400,
        param,
      });
      expect(isOpenAiError(reply.body)).toBe(true);
    }
  });

  it("answers Nest's and the body parser's own errors in OpenAI's shape", async () => {
    const alice = client(gateway.url, Keys.alice);
    expectError(await alice.get('/v1/no-such-route'), 404, { type: 'not_found_error' });
    expectError(await alice.delete('/v1/completions'), 404);
    expectError(await alice.post('/v1/completions', '{"model": '), 400, { code: 'invalid_json' });
    expectError(await alice.post('/v1/completions', '"just a string"'), 400, {
      code: 'invalid_json',
    });
    expectError(
      await alice.post('/v1/completions', { model: 'scripted', prompt: 'x'.repeat(5000) }),
      413,
      {
        code: 'payload_too_large',
      },
    );
  });

  it('keeps tenants apart: 404 for another tenant’s files, batches, jobs and documents', async () => {
    const alice = client(gateway.url, Keys.alice);
    const bob = client(gateway.url, Keys.bob);
    const form = new FormData();
    form.append('purpose', 'user_data');
    form.append('file', new Blob(['hello']), 'hello.txt');
    const file = (await (await alice.raw('/v1/files', { method: 'POST', body: form })).json()) as {
      id: string;
    };
    expectError(await bob.get(`/v1/files/${file.id}`), 404, {
      message: `No such file: '${file.id}'`,
    });
    expectError(await bob.get(`/v1/files/${file.id}/content`), 404);
    expectError(await bob.delete(`/v1/files/${file.id}`), 404);
    expect((await bob.get<{ data: unknown[] }>('/v1/files')).body.data).toEqual([]);
    expectError(
      await bob.post('/v1/batches', {
        input_file_id: file.id,
        endpoint: '/v1/completions',
        completion_window: '24h',
      }),
      404,
      {
        param: 'input_file_id',
      },
    );
    expectError(
      await alice.post('/v1/batches', {
        input_file_id: file.id,
        endpoint: '/v1/completions',
        completion_window: '24h',
      }),
      400,
      {
        param: 'input_file_id',
      },
    );
    // The id of something that never existed answers exactly like another tenant's.
    expectError(await bob.get('/v1/files/file-000000000000000000000000'), 404);
    expect((await alice.delete(`/v1/files/${file.id}`)).body).toEqual({
      id: file.id,
      object: 'file',
      deleted: true,
    });
  });

  it('lists only the tenant’s own jobs and documents, newest first, page by page', async () => {
    const alice = client(gateway.url, Keys.alice);
    const bob = client(gateway.url, Keys.bob);
    interface Listed {
      data: { id: string }[];
      has_more: boolean;
      last_id: string | null;
    }
    const upload = async (who: typeof alice, text: string) =>
      (
        (await (await who.raw('/v1/documents', { method: 'POST', body: text })).json()) as {
          id: string;
        }
      ).id;
    const first = await upload(alice, 'first text');
    const second = await upload(alice, 'second text');
    const theirs = await upload(bob, 'bob text');
    const documents = await alice.get<Listed>('/v1/documents');
    expect(documents.body.data.map((document) => document.id)).toEqual([second, first]);
    expect(documents.body.data[0]).toMatchObject({ object: 'document', bytes: 11 });
    expect((await bob.get<Listed>('/v1/documents')).body.data.map((d) => d.id)).toEqual([theirs]);
    await alice.delete(`/v1/documents/${first}`);
    expect((await alice.get<Listed>('/v1/documents')).body.data.map((d) => d.id)).toEqual([second]);
    await bob.delete(`/v1/documents/${theirs}`);

    // One at a time, each finished before the next: MAX_QUEUE_DEPTH is 2 here.
    const submit = async (who: typeof alice, prompt: string) => {
      // The gateway reuses a queue-depth reading for 100 ms and adds its own submissions to it:
      // past that, it reads the real depth, where the finished job no longer waits.
      await new Promise((resolve) => setTimeout(resolve, 150));
      const job = await who.post<{ id: string }>('/v1/jobs', {
        type: 'score',
        model: 'scripted',
        prompt,
      });
      expect(job.status).toBe(200);
      await waitFor(
        async () =>
          (await who.get<{ status: string }>(`/v1/jobs/${job.body.id}`)).body.status ===
          'completed',
        { message: `job ${job.body.id} to complete` },
      );
      return job.body.id;
    };
    const older = await submit(alice, 'one');
    const newer = await submit(alice, 'two');
    const bobs = await submit(bob, 'three');
    const page1 = await alice.get<Listed>('/v1/jobs?limit=1');
    expect(page1.body.data.map((job) => job.id)).toEqual([newer]);
    expect(page1.body.has_more).toBe(true);
    const page2 = await alice.get<Listed>(`/v1/jobs?limit=1&after=${page1.body.last_id ?? ''}`);
    expect(page2.body.data.map((job) => job.id)).toEqual([older]);
    expect(page2.body.has_more).toBe(false);
    expect(page2.body.data[0]).toMatchObject({ object: 'job', type: 'score', model: 'scripted' });
    expect((await bob.get<Listed>('/v1/jobs')).body.data.map((job) => job.id)).toEqual([bobs]);
    // Another tenant's id as a cursor reveals nothing.
    expect((await alice.get<Listed>(`/v1/jobs?after=${bobs}`)).body.data).toEqual([]);
    // Completions are not jobs of /v1/jobs: they stay out of the list.
    await alice.post('/v1/completions', { model: 'scripted', prompt: 'x', max_tokens: 2 });
    expect((await alice.get<Listed>('/v1/jobs')).body.data).toHaveLength(2);
  });

  it('refuses oversize documents and files, and non-UTF-8 documents', async () => {
    const alice = client(gateway.url, Keys.alice);
    const big = await alice.raw('/v1/documents', { method: 'POST', body: 'x'.repeat(1001) });
    expectError({ status: big.status, body: await big.json(), headers: big.headers }, 413, {
      code: 'payload_too_large',
    });
    const exact = await alice.raw('/v1/documents', { method: 'POST', body: 'x'.repeat(1000) });
    expect(((await exact.json()) as { bytes: number }).bytes).toBe(1000);
    const binary = await alice.raw('/v1/documents', {
      method: 'POST',
      body: new Uint8Array([0x66, 0xff, 0xfe]),
    });
    expectError(
      { status: binary.status, body: await binary.json(), headers: binary.headers },
      400,
      { code: 'invalid_encoding' },
    );
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob(['y'.repeat(2001)]), 'big.jsonl');
    const file = await alice.raw('/v1/files', { method: 'POST', body: form });
    expectError({ status: file.status, body: await file.json(), headers: file.headers }, 413);
  });

  it('fails a batch over BATCH_MAX_LINES with a clear error', async () => {
    const alice = client(gateway.url, Keys.alice);
    const line = JSON.stringify({
      custom_id: 'x',
      method: 'POST',
      url: '/v1/completions',
      body: { model: 'scripted', prompt: 'p' },
    });
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([[line, line, line, line].join('\n')]), 'four.jsonl');
    const file = (await (await alice.raw('/v1/files', { method: 'POST', body: form })).json()) as {
      id: string;
    };
    const batch = await alice.post<{ id: string }>('/v1/batches', {
      input_file_id: file.id,
      endpoint: '/v1/completions',
      completion_window: '24h',
    });
    let final:
      { status: string; errors: { data: { code: string; message: string }[] } } | undefined;
    await waitFor(async () => {
      final = (await alice.get<typeof final & object>(`/v1/batches/${batch.body.id}`)).body;
      return final.status === 'failed';
    });
    expect(final?.errors.data[0]).toMatchObject({
      code: 'too_many_requests',
      message: expect.stringContaining('more than 3 requests') as unknown,
    });
  });

  it('caps the queue depth per priority with 429 and Retry-After', async () => {
    const bob = client(gateway.url, Keys.bob);
    for (let index = 0; index < 2; index += 1) {
      expect(
        (await bob.post('/v1/jobs', { type: 'score', model: 'idle', prompt: 'x' })).status,
      ).toBe(200);
    }
    const refused = await bob.post('/v1/jobs', { type: 'score', model: 'idle', prompt: 'x' });
    expectError(refused, 429, { type: 'rate_limit_error', code: 'queue_full' });
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('answers 503 when a known model has no live worker, 404 when it was never served', async () => {
    const alice = client(gateway.url, Keys.alice);
    const ghost = await idleWorker(redisUrl, prefix, 'ghost');
    await waitFor(async () =>
      (await alice.get<{ data: { id: string }[] }>('/v1/models')).body.data.some(
        (entry) => entry.id === 'ghost',
      ),
    );
    await ghost.stop();
    await waitFor(
      async () =>
        !(await alice.get<{ data: { id: string }[] }>('/v1/models')).body.data.some(
          (entry) => entry.id === 'ghost',
        ),
    );
    const reply = await alice.post('/v1/completions', { model: 'ghost', prompt: 'x' });
    expectError(reply, 503, { code: 'no_live_worker' });
    expect(reply.headers.get('retry-after')).not.toBeNull();
    expectError(await alice.post('/v1/completions', { model: 'never-served', prompt: 'x' }), 404, {
      code: 'model_not_found',
    });
  });
});

describe('per-key rate limits', () => {
  const redisUrl = inject('redisUrl');
  const prefix = uniquePrefix('gw-rate');
  let gateway: TestGateway;
  let worker: ScriptedWorker;

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dijiang-keys-'));
    const keysFile = join(dir, 'keys.json');
    writeFileSync(
      keysFile,
      JSON.stringify([
        { key: 'sk-carol-0123456789', tenant: 'carol' },
        { key: 'sk-dave-0123456789', tenant: 'dave' },
      ]),
    );
    worker = await startScriptedWorker(redisUrl, prefix, { model: 'scripted' });
    gateway = await startTestGateway(redisUrl, prefix, {
      API_KEYS_FILE: keysFile,
      RATE_LIMIT_RPM: '3',
      RATE_LIMIT_TPM: '5',
    });
  });
  afterAll(async () => {
    await gateway.service.stop();
    await worker.stop();
  });

  it('limits requests per minute per key (keys from API_KEYS_FILE)', async () => {
    const carol = client(gateway.url, 'sk-carol-0123456789');
    for (let index = 0; index < 3; index += 1)
      expect((await carol.get('/v1/models')).status).toBe(200);
    const refused = await carol.get('/v1/models');
    expectError(refused, 429, { code: 'rate_limit_requests' });
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // Another key has its own budget.
    expect((await client(gateway.url, Keys.alice).get('/v1/models')).status).toBe(200);
  });

  it('limits tokens per minute per key', async () => {
    const dave = client(gateway.url, 'sk-dave-0123456789');
    expect(
      (await dave.post('/v1/completions', { model: 'scripted', prompt: 'abc', max_tokens: 4 }))
        .status,
    ).toBe(200);
    expectError(
      await dave.post('/v1/completions', { model: 'scripted', prompt: 'abc', max_tokens: 4 }),
      429,
      {
        code: 'rate_limit_tokens',
      },
    );
    // Routes match whatever the case, and so does the budget.
    expectError(
      await dave.post('/v1/Chat/Completions', {
        model: 'scripted',
        messages: [{ role: 'user', content: 'abc' }],
      }),
      429,
      { code: 'rate_limit_tokens' },
    );
  });
});

describe('auth configuration at boot', () => {
  const boot = (env: Record<string, string>) =>
    spawnSync(process.execPath, [appEntry('gateway')], {
      env: { PATH: process.env.PATH ?? '', REDIS_URL: inject('redisUrl'), PORT: '0', ...env },
      encoding: 'utf8',
      timeout: 20_000,
    });

  it('refuses to disable auth on a non-loopback address', () => {
    const result = boot({ AUTH_DISABLED: 'true', HOST: '0.0.0.0' });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('AUTH_DISABLED=true is refused on HOST=0.0.0.0');
  });

  it('names a malformed keys entry', () => {
    const result = boot({ API_KEYS: 'bad tenant:sk-0123456789' });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/API_KEYS: tenant "bad tenant" must be/);
  });
});
