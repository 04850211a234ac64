import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServiceProcess } from '#processes';
import { startWorker, TestRedis, uniquePrefix, type TestGateway } from '#testing';
import { Keys, startTestGateway } from '../gateway/support/harness.js';
import { waitFor } from '../support/wait.js';
import { TestProducer } from '../worker/support.js';
import {
  batchOutputTexts,
  batchRequests,
  expectStreamMatchesReference,
  lineJobId,
  ReferenceGenerator,
  submitBatch,
  waitForBatch,
  type ReferenceRun,
} from './support.js';

/**
 * Redis goes away mid-batch and comes back: a graceful stop (SIGTERM, so the append-only file is
 * flushed), a few seconds down, a restart on the same port and data. The gateway and both
 * workers ride it out without a restart, and the batch completes with every line equal to an
 * uninterrupted in-process run. A stream append in flight when Redis stopped may have been
 * executed without its reply arriving; the client re-sends it after reconnecting, so the raw
 * stream can hold that index twice (same token): readers de-duplicate by index and see each once.
 */

const LINES = 4;
/** Tokens per line: long enough that every line is mid-generation when Redis stops. */
const MAX_TOKENS = 1000;
/** How long Redis stays down. @defaultValue 3000 ms */
const OUTAGE_MS = 3000;

interface Readiness {
  status: string;
  redis: { status: string };
  workers: { list: { id: string; pid: number; heartbeatAt: string }[] };
}

async function readiness(url: string): Promise<{ status: number; body: Readiness }> {
  const response = await fetch(`${url}/health/ready`);
  return { status: response.status, body: (await response.json()) as Readiness };
}

describe('Redis outage during a batch', () => {
  let redis: TestRedis;
  let gateway: TestGateway | undefined;
  const workers: ServiceProcess[] = [];
  let producer: TestProducer | undefined;
  let reference: ReferenceGenerator | undefined;

  beforeAll(async () => {
    reference = await ReferenceGenerator.start();
    redis = await TestRedis.start({ appendOnly: true });
  });

  afterAll(async () => {
    await producer?.close();
    await Promise.all([
      ...workers.splice(0).map((worker) => worker.stop('SIGKILL')),
      gateway?.service.stop('SIGKILL'),
    ]);
    await redis.stop();
    await reference?.close();
  });

  it('completes every line once, exactly as uninterrupted; gateway and workers reconnect in place', async () => {
    const prefix = uniquePrefix('outage');
    gateway = await startTestGateway(redis.url, prefix);
    const workerEnv = (id: string) => ({
      QUEUE_PREFIX: prefix,
      WORKER_ID: id,
      WORKER_CAPACITY: '2',
      CHECKPOINT_EVERY_TOKENS: '8',
    });
    workers.push(
      await startWorker(redis.url, workerEnv('worker-1')),
      await startWorker(redis.url, workerEnv('worker-2')),
    );
    const pids = { workers: workers.map((worker) => worker.pid) };
    const before = await readiness(gateway.url);
    expect(before.status).toBe(200);
    expect(before.body.workers.list.map((worker) => worker.pid).sort()).toEqual(
      [...pids.workers].sort(),
    );

    const client = new TestProducer(redis.url, prefix);
    producer = client;
    // The outage is deliberate: this client's commands wait for the reconnection, and its
    // connection errors meanwhile are expected, not failures.
    client.redis.on('error', () => undefined);
    const openai = new OpenAI({ apiKey: Keys.alice, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
    const requests = batchRequests(LINES, MAX_TOKENS);
    const batchId = await submitBatch(openai, requests);
    const jobIds = requests.map((_request, line) => lineJobId(batchId, line));
    await waitFor(
      async () =>
        (await Promise.all(jobIds.map((jobId) => client.tokenCount(jobId)))).every(
          (count) => count >= 30,
        ),
      { timeoutMs: 30_000, message: 'every line to stream 30 tokens' },
    );

    await redis.stop();
    const down = await readiness(gateway.url);
    expect(down.status).toBe(503);
    expect(down.body.redis.status).toBe('down');
    await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS));
    await redis.restart();
    const restartedAt = Date.now();
    // The append-only file kept what was streamed before the stop: every line is mid-way.
    for (const jobId of jobIds) {
      const streamed = await client.tokenCount(jobId);
      expect(streamed, jobId).toBeGreaterThanOrEqual(30);
      expect(streamed, jobId).toBeLessThan(MAX_TOKENS);
    }

    // The same processes, reconnected: ready again, with both workers registered.
    await waitFor(
      async () => {
        const after = await readiness(gateway?.url ?? '').catch(() => undefined);
        return after?.status === 200 && after.body.workers.list.length === 2;
      },
      { timeoutMs: 20_000, message: 'the gateway to be ready with both workers again' },
    );

    const batch = await waitForBatch(openai, batchId, 60_000);
    expect(batch.request_counts).toEqual({ total: LINES, completed: LINES, failed: 0 });
    expect(batch.error_file_id).toBeNull();
    const references: ReferenceRun[] = [];
    for (const request of requests) {
      if (reference === undefined) throw new Error('the reference engine did not start');
      references.push(await reference.run(request));
    }
    // One output line per request, in input order: none lost, none written twice.
    expect(await batchOutputTexts(openai, batch)).toEqual(
      requests.map((request, line) => [request.customId, references[line]?.text]),
    );
    for (const [line, jobId] of jobIds.entries()) {
      const expected = references[line];
      if (expected === undefined) throw new Error(`no reference for line ${line}`);
      expect(expected.tokens).toHaveLength(MAX_TOKENS);
      expectStreamMatchesReference(await client.stream(jobId), expected, jobId);
    }

    // Both original workers, heartbeating again since the restart (their records have a 5 s TTL,
    // so a stale one from before the outage would be gone by now).
    const after = await readiness(gateway.url);
    expect(after.status).toBe(200);
    expect(after.body.workers.list.map((worker) => worker.pid).sort()).toEqual(
      [...pids.workers].sort(),
    );
    for (const worker of after.body.workers.list) {
      expect(Date.parse(worker.heartbeatAt), worker.id).toBeGreaterThan(restartedAt);
    }
    for (const service of [gateway.service, ...workers]) {
      expect(service.child.exitCode, service.name).toBeNull();
    }
  }, 120_000);
});
