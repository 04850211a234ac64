import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { JobName, JobPriority, type GenerateResult } from '#contracts';
import { freePort, type ServiceProcess } from '#processes';
import { startWorker, testModelDir, TEST_MODEL_ID, uniquePrefix } from '#testing';
import { generatePayload, TestProducer } from './support.js';

/** Samples of a Prometheus text exposition: `name{labels}` -> value. */
async function scrape(url: string): Promise<Map<string, number>> {
  const response = await fetch(url);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toContain('text/plain');
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

/** End-of-text banned, so every job generates exactly max_tokens. */
const sampling = { temperature: 0.8, seed: 5, logit_bias: { '256': -100 } };

describe('worker metrics (METRICS_PORT), against what the jobs report', () => {
  const redisUrl = inject('redisUrl');
  const prefix = uniquePrefix('worker-metrics');
  let producer: TestProducer;
  let worker: ServiceProcess;
  let url: string;
  const series = (name: string): string =>
    `${name}{model="${TEST_MODEL_ID}",worker="metrics-worker"}`;

  beforeAll(async () => {
    producer = new TestProducer(redisUrl, prefix);
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    worker = await startWorker(redisUrl, {
      QUEUE_PREFIX: prefix,
      WORKER_ID: 'metrics-worker',
      WORKER_CAPACITY: '4',
      METRICS_PORT: String(port),
    });
  });
  afterAll(async () => {
    await worker.stop('SIGKILL');
    await producer.close();
  });

  it('states its capacity and the state size of the bundle before any job', async () => {
    const samples = await scrape(`${url}/metrics`);
    const manifest = JSON.parse(readFileSync(join(testModelDir(), 'model.json'), 'utf8')) as {
      stateBytesPerSequence: number;
    };
    expect(samples.get(series('dijiang_worker_state_bytes_per_sequence'))).toBe(
      manifest.stateBytesPerSequence,
    );
    expect(samples.get(series('dijiang_worker_capacity'))).toBe(4);
    expect(samples.get(series('dijiang_worker_decode_steps_total'))).toBe(0);
    expect(samples.get(series('dijiang_worker_active_sequences'))).toBe(0);
    expect(samples.get(series('dijiang_worker_state_bytes'))).toBe(0);
    expect(
      samples.get('dijiang_worker_process_resident_memory_bytes{worker="metrics-worker"}'),
    ).toBeGreaterThan(0);
    expect((await fetch(`${url}/other`)).status).toBe(404);
  });

  it('counts the tokens the jobs report, and batches concurrent sequences', async () => {
    const before = await scrape(`${url}/metrics`);
    await producer.add(
      JobName.Generate,
      generatePayload('Hello there', { ...sampling, max_tokens: 30 }),
      {
        jobId: 'one',
        priority: JobPriority.Interactive,
      },
    );
    const one = (await producer.result(TEST_MODEL_ID, 'one')) as GenerateResult;
    const afterOne = await scrape(`${url}/metrics`);
    const delta = (after: Map<string, number>, from: Map<string, number>, name: string): number =>
      (after.get(series(name)) ?? NaN) - (from.get(series(name)) ?? NaN);
    // The first token is sampled from the prompt's prefill; each later one costs a decode row.
    expect(delta(afterOne, before, 'dijiang_worker_decode_rows_total')).toBe(
      one.usage.completionTokens - 1,
    );
    expect(delta(afterOne, before, 'dijiang_worker_prefill_tokens_total')).toBe(
      one.usage.promptTokens,
    );
    // Alone, every decode step carried one row.
    expect(delta(afterOne, before, 'dijiang_worker_decode_steps_total')).toBe(
      one.usage.completionTokens - 1,
    );
    // The batch is the engine's now: none once the job is done.
    expect(afterOne.get(series('dijiang_worker_batch_size'))).toBe(0);
    expect(delta(afterOne, before, 'dijiang_worker_decode_seconds_total')).toBeGreaterThan(0);

    const ids = ['a', 'b', 'c'];
    await Promise.all(
      ids.map((jobId, index) =>
        producer.add(
          JobName.Generate,
          generatePayload(`Prompt ${index}`, { ...sampling, max_tokens: 40 }),
          { jobId, priority: JobPriority.Interactive },
        ),
      ),
    );
    const results = (await Promise.all(
      ids.map((jobId) => producer.result(TEST_MODEL_ID, jobId)),
    )) as GenerateResult[];
    const afterThree = await scrape(`${url}/metrics`);
    const rows = delta(afterThree, afterOne, 'dijiang_worker_decode_rows_total');
    expect(rows).toBe(results.reduce((sum, result) => sum + result.usage.completionTokens - 1, 0));
    expect(delta(afterThree, afterOne, 'dijiang_worker_prefill_tokens_total')).toBe(
      results.reduce((sum, result) => sum + result.usage.promptTokens, 0),
    );
    // Sequences that ran together shared decode steps: fewer steps than rows.
    expect(delta(afterThree, afterOne, 'dijiang_worker_decode_steps_total')).toBeLessThan(rows);
    expect(afterThree.get(series('dijiang_worker_active_sequences'))).toBe(0);
  });
});
