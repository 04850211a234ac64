import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniquePrefix, type TestGateway } from '#testing';
import { waitFor } from '../support/wait.js';
import { client, Keys, sseEvents, startTestGateway } from './support/harness.js';
import {
  expectedText,
  LOSE_CHOICE_END,
  startScriptedWorker,
  type ScriptedWorker,
} from './support/scripted-worker.js';

interface Chunk {
  id: string;
  choices: { index: number; text: string; finish_reason: string | null }[];
}
interface JobObject {
  id: string;
  status: string;
  type: string;
  result: Record<string, unknown> | null;
  progress: { prompt_tokens_total: number } | null;
  worker: { id: string } | null;
}

/** Streams, reconnects, cancellation, documents, jobs and states, through HTTP. */
describe('streams and jobs', () => {
  const redisUrl = inject('redisUrl');
  const prefix = uniquePrefix('gw-streams');
  const model = 'slow';
  let gateway: TestGateway;
  let worker: ScriptedWorker;
  let alice: ReturnType<typeof client>;
  let bob: ReturnType<typeof client>;

  beforeAll(async () => {
    worker = await startScriptedWorker(redisUrl, prefix, { model, tokenDelayMs: 15 });
    gateway = await startTestGateway(redisUrl, prefix);
    alice = client(gateway.url, Keys.alice);
    bob = client(gateway.url, Keys.bob);
  });
  afterAll(async () => {
    await gateway.service.stop();
    await worker.stop();
  });

  const streamRequest = (maxTokens: number) =>
    alice.raw('/v1/completions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model, prompt: 'p', max_tokens: maxTokens, stream: true }),
    });

  it('continues a stream after Last-Event-ID without gaps or repeats', async () => {
    const first = await streamRequest(20);
    const controller = new AbortController();
    const seen: { id: string; chunk: Chunk }[] = [];
    const reader = sseEvents(first);
    for await (const event of reader) {
      seen.push({ id: event.id ?? '', chunk: JSON.parse(event.data) as Chunk });
      if (seen.length === 5) break;
    }
    controller.abort();
    const jobId = seen[0]?.chunk.id ?? '';
    const lastId = seen.at(-1)?.id ?? '';
    const resumed = await alice.raw(`/v1/completions/${jobId}/stream`, {
      headers: { 'Last-Event-ID': lastId },
    });
    expect(resumed.status).toBe(200);
    const rest: string[] = [];
    let done = false;
    for await (const event of sseEvents(resumed)) {
      if (event.data === '[DONE]') {
        done = true;
        break;
      }
      rest.push((JSON.parse(event.data) as Chunk).choices[0]?.text ?? '');
    }
    expect(done).toBe(true);
    const text = seen.map((entry) => entry.chunk.choices[0]?.text ?? '').join('') + rest.join('');
    expect(text).toBe(expectedText(0, 20));
    // Another tenant cannot attach to it.
    expect((await bob.get(`/v1/completions/${jobId}/stream`)).status).toBe(404);
    expect(
      (await alice.get(`/v1/completions/${jobId}/stream`, { 'Last-Event-ID': 'nonsense' })).status,
    ).toBe(400);
  });

  it('answers an error, never a "stop", when a choice has no end entry in the stream', async () => {
    const request = { model, prompt: `p ${LOSE_CHOICE_END}`, max_tokens: 2, n: 2 };
    const plain = await alice.post<{ error: { type: string; message: string } }>(
      '/v1/completions',
      request,
    );
    expect(plain.status).toBe(500);
    expect(plain.body.error.type).toBe('server_error');
    expect(plain.body.error.message).toMatch(/choice 1 of 2 has no end entry/);
    const streamed = await alice.raw('/v1/completions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ ...request, stream: true }),
    });
    const data: string[] = [];
    for await (const event of sseEvents(streamed)) data.push(event.data);
    expect(data).not.toContain('[DONE]');
    const last = JSON.parse(data.at(-1) ?? '{}') as { error?: { message: string } };
    expect(last.error?.message).toMatch(/choice 1 has no end entry/);
  });

  it('cancels the job when the client goes away and does not come back', async () => {
    const controller = new AbortController();
    const response = await alice.raw('/v1/completions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model, prompt: 'p', max_tokens: 400, stream: true }),
      signal: controller.signal,
    });
    let jobId = '';
    for await (const event of sseEvents(response)) {
      jobId = (JSON.parse(event.data) as Chunk).id;
      break;
    }
    controller.abort();
    let job: JobObject | undefined;
    await waitFor(
      async () => {
        job = (await alice.get<JobObject>(`/v1/jobs/${jobId}`)).body;
        return job.status === 'cancelled';
      },
      { timeoutMs: 10_000, message: 'the abandoned job to be cancelled' },
    );
    const choices = (job?.result as { choices: { finish_reason: string; text: string }[] }).choices;
    expect(choices[0]?.finish_reason).toBe('cancelled');
    // Partial output is kept, and it is far from the 400 tokens asked for.
    expect(choices[0]?.text.length).toBeGreaterThan(0);
    expect(choices[0]?.text.length).toBeLessThan(expectedText(0, 400).length);
  });

  it('uploads a document and runs a score job on it, with progress events', async () => {
    const text = 'a long document\n'.repeat(100);
    const uploaded = await alice.raw('/v1/documents?filename=doc.txt', {
      method: 'POST',
      body: text,
    });
    const document = (await uploaded.json()) as { id: string; bytes: number; object: string };
    expect(document).toMatchObject({ object: 'document', bytes: text.length });
    expect((await bob.get(`/v1/documents/${document.id}`)).status).toBe(404);
    expect(
      (await bob.post('/v1/jobs', { type: 'score', model, document_id: document.id })).body,
    ).toMatchObject({
      error: { param: 'document_id' },
    });

    const created = await alice.post<JobObject>('/v1/jobs', {
      type: 'score',
      model,
      document_id: document.id,
    });
    expect(created.status).toBe(200);
    const events = await alice.raw(`/v1/jobs/${created.body.id}/events`);
    const names: (string | undefined)[] = [];
    let final: JobObject | undefined;
    for await (const event of sseEvents(events)) {
      names.push(event.event);
      if (event.event === 'done') final = JSON.parse(event.data) as JobObject;
    }
    expect(names).toEqual(['progress', 'done']);
    expect(final).toMatchObject({
      status: 'completed',
      type: 'score',
      result: { tokens: text.length },
    });
    expect(final?.worker?.id).toBe(worker.id);
    expect((await bob.get(`/v1/jobs/${created.body.id}`)).status).toBe(404);
    expect((await bob.post(`/v1/jobs/${created.body.id}/cancel`)).status).toBe(404);

    expect((await bob.delete(`/v1/documents/${document.id}`)).status).toBe(404);
    expect((await alice.delete(`/v1/documents/${document.id}`)).body).toEqual({
      id: document.id,
      object: 'document',
      deleted: true,
    });
    expect((await alice.get(`/v1/documents/${document.id}`)).status).toBe(404);
  });

  it('cancels a queued or running job through /v1/jobs', async () => {
    const created = await alice.post<JobObject>('/v1/jobs', {
      type: 'generate',
      model,
      prompt: 'p',
      max_tokens: 500,
    });
    expect(created.body.status).toMatch(/queued|running/);
    const cancelled = await alice.post<JobObject>(`/v1/jobs/${created.body.id}/cancel`);
    expect(cancelled.status).toBe(200);
    await waitFor(
      async () =>
        (await alice.get<JobObject>(`/v1/jobs/${created.body.id}`)).body.status === 'cancelled',
      {
        timeoutMs: 10_000,
        message: 'the job to be cancelled',
      },
    );
  });

  it('digests a text into a state that completions continue from, per tenant', async () => {
    const state = await alice.post<{ id: string; object: string; model: string; position: number }>(
      '/v1/states',
      {
        model,
        prompt: 'remember this',
      },
    );
    expect(state.status).toBe(200);
    expect(state.body).toMatchObject({ object: 'state', model, position: 'remember this'.length });
    expect((await alice.get(`/v1/states/${state.body.id}`)).body).toMatchObject({
      id: state.body.id,
    });
    expect((await bob.get(`/v1/states/${state.body.id}`)).status).toBe(404);
    const foreign = await bob.post('/v1/completions', {
      model,
      prompt: 'x',
      state_id: state.body.id,
      max_tokens: 1,
    });
    expect(foreign.status).toBe(404);
    expect(foreign.body).toMatchObject({ error: { param: 'state_id' } });
    const continued = await alice.post<{
      usage: { prompt_tokens_details: { cached_tokens: number } };
    }>('/v1/completions', {
      model,
      prompt: ' and more',
      state_id: state.body.id,
      max_tokens: 1,
    });
    expect(continued.status).toBe(200);
    // The scripted worker reports 7 cached tokens for any continued state.
    expect(continued.body.usage.prompt_tokens_details.cached_tokens).toBe(7);
    expect((await bob.delete(`/v1/states/${state.body.id}`)).status).toBe(404);
    expect((await alice.delete(`/v1/states/${state.body.id}`)).status).toBe(200);
    expect((await alice.get(`/v1/states/${state.body.id}`)).status).toBe(404);
  });

  it('cancels a batch: its queued lines go to the error file as cancelled', async () => {
    const jsonl = Array.from({ length: 12 }, (_, index) =>
      JSON.stringify({
        custom_id: `r${index}`,
        method: 'POST',
        url: '/v1/completions',
        body: { model, prompt: 'p', max_tokens: 30 },
      }),
    ).join('\n');
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([jsonl]), 'lines.jsonl');
    const file = (await (await alice.raw('/v1/files', { method: 'POST', body: form })).json()) as {
      id: string;
    };
    const batch = await alice.post<{ id: string }>('/v1/batches', {
      input_file_id: file.id,
      endpoint: '/v1/completions',
      completion_window: '24h',
    });
    await waitFor(
      async () =>
        (await alice.get<{ status: string }>(`/v1/batches/${batch.body.id}`)).body.status ===
        'in_progress',
      {
        message: 'the batch to start',
      },
    );
    expect((await bob.post(`/v1/batches/${batch.body.id}/cancel`)).status).toBe(404);
    const cancelling = await alice.post<{ status: string }>(`/v1/batches/${batch.body.id}/cancel`);
    expect(cancelling.body.status).toBe('cancelling');
    let final:
      | {
          status: string;
          error_file_id: string;
          request_counts: { total: number; completed: number; failed: number };
        }
      | undefined;
    await waitFor(
      async () => {
        final = (await alice.get<typeof final & object>(`/v1/batches/${batch.body.id}`)).body;
        return final.status === 'cancelled';
      },
      { timeoutMs: 15_000, message: 'the batch to be cancelled' },
    );
    expect(final?.request_counts.total).toBe(12);
    expect((final?.request_counts.completed ?? 0) + (final?.request_counts.failed ?? 0)).toBe(12);
    expect(final?.request_counts.failed).toBeGreaterThan(0);
    const errors = (await alice.get<string>(`/v1/files/${final?.error_file_id ?? ''}/content`)).body
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { custom_id: string; error: { code: string } });
    expect(errors.every((line) => line.error.code === 'batch_cancelled')).toBe(true);
  });
});
