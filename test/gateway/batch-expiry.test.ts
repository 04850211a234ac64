import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniquePrefix, type TestGateway } from '#testing';
import { waitFor } from '../support/wait.js';
import { client, Keys, startTestGateway } from './support/harness.js';
import {
  expectedText,
  startScriptedWorker,
  type ScriptedWorker,
} from './support/scripted-worker.js';

interface FinishedBatch {
  status: string;
  expired_at: number | null;
  output_file_id: string | null;
  error_file_id: string | null;
  request_counts: { total: number; completed: number; failed: number };
}

interface FileLine {
  custom_id: string;
  response: { body: { choices: { text: string }[] } } | null;
  error: { code: string } | null;
}

/** A batch that outlives BATCH_EXPIRY_SECONDS, through HTTP. */
describe('batch expiry', () => {
  const redisUrl = inject('redisUrl');
  const prefix = uniquePrefix('gw-batch-expiry');
  const model = 'slow';
  const lines = 20;
  const maxTokens = 5;
  let gateway: TestGateway;
  let worker: ScriptedWorker;
  let alice: ReturnType<typeof client>;

  beforeAll(async () => {
    // 8 lines at a time, about a second each: 20 lines need about 3 s, the batch has 2.
    worker = await startScriptedWorker(redisUrl, prefix, { model, tokenDelayMs: 200 });
    gateway = await startTestGateway(redisUrl, prefix, { BATCH_EXPIRY_SECONDS: '2' });
    alice = client(gateway.url, Keys.alice);
  });
  afterAll(async () => {
    await gateway.service.stop();
    await worker.stop();
  });

  const fileLines = async (fileId: string | null): Promise<FileLine[]> =>
    fileId === null
      ? []
      : (await alice.get<string>(`/v1/files/${fileId}/content`)).body
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line) as FileLine);

  it('stops what has not finished, and reports it as expired under its custom_id', async () => {
    const jsonl = Array.from({ length: lines }, (_, index) =>
      JSON.stringify({
        custom_id: `line-${index}`,
        method: 'POST',
        url: '/v1/completions',
        body: { model, prompt: 'p', max_tokens: maxTokens },
      }),
    ).join('\n');
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([jsonl]), 'lines.jsonl');
    const file = (await (await alice.raw('/v1/files', { method: 'POST', body: form })).json()) as {
      id: string;
    };
    const created = await alice.post<{ id: string; expires_at: number; created_at: number }>(
      '/v1/batches',
      { input_file_id: file.id, endpoint: '/v1/completions', completion_window: '24h' },
    );
    expect(created.body.expires_at - created.body.created_at).toBe(2);
    let batch: FinishedBatch | undefined;
    await waitFor(
      async () => {
        batch = (await alice.get<FinishedBatch>(`/v1/batches/${created.body.id}`)).body;
        return batch.status === 'expired';
      },
      { timeoutMs: 20_000, message: 'the batch to expire' },
    );
    expect(batch?.expired_at).toBeGreaterThan(0);
    const counts = batch?.request_counts;
    expect(counts?.total).toBe(lines);
    expect((counts?.completed ?? 0) + (counts?.failed ?? 0)).toBe(lines);
    expect(counts?.failed).toBeGreaterThan(0);

    const output = await fileLines(batch?.output_file_id ?? null);
    const errors = await fileLines(batch?.error_file_id ?? null);
    expect(output).toHaveLength(counts?.completed ?? -1);
    expect(errors).toHaveLength(counts?.failed ?? -1);
    // Every line is in exactly one file; finished ones whole, the rest marked expired.
    expect([...output, ...errors].map((line) => line.custom_id).sort()).toEqual(
      Array.from({ length: lines }, (_, index) => `line-${index}`).sort(),
    );
    for (const line of output) {
      expect(line.response?.body.choices[0]?.text).toBe(expectedText(0, maxTokens));
    }
    expect(errors.every((line) => line.error?.code === 'batch_expired')).toBe(true);
  });
});
