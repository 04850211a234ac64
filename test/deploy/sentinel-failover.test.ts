import OpenAI from 'openai';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServiceProcess } from '#processes';
import { startWorker, TestSentinels, uniquePrefix, type TestGateway } from '#testing';
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
 * Sentinel failover mid-batch: a primary, its replica and three sentinels; a gateway and two
 * workers reach Redis through the sentinels (REDIS_SENTINELS, REDIS_SENTINEL_NAME). While 8
 * seeded batch lines generate, the primary is SIGKILLed: no shutdown, no final write. The
 * sentinels agree it is down and promote the replica; the same gateway and worker processes ask
 * them for the new primary and carry on without a restart. Every line completes with the text of
 * an uninterrupted in-process run, and a de-duplicating reader sees each stream index once.
 *
 * Replication is asynchronous: writes the old primary acknowledged but had not yet sent to the
 * replica are gone after the promotion (on loopback that window is tiny, so this run mostly
 * shows the failover path; README "Redis HA" explains what the design does about that window).
 */

const LINES = 8;
/** Tokens per line: long enough that every line is mid-generation when the primary dies. */
const MAX_TOKENS = 1000;

interface Readiness {
  workers: { list: { id: string; pid: number; heartbeatAt: string }[] };
}

async function readiness(url: string): Promise<{ status: number; body: Readiness }> {
  const response = await fetch(`${url}/health/ready`);
  return { status: response.status, body: (await response.json()) as Readiness };
}

describe('Sentinel failover during a batch', () => {
  let sentinels: TestSentinels;
  let gateway: TestGateway | undefined;
  const workers: ServiceProcess[] = [];
  let producer: TestProducer | undefined;
  let reference: ReferenceGenerator | undefined;

  beforeAll(async () => {
    reference = await ReferenceGenerator.start();
    sentinels = await TestSentinels.start();
  }, 60_000);

  afterAll(async () => {
    await producer?.close();
    await Promise.all([
      ...workers.splice(0).map((worker) => worker.stop('SIGKILL')),
      gateway?.service.stop('SIGKILL'),
    ]);
    await sentinels.stop();
    await reference?.close();
  });

  it('completes every line once, exactly as uninterrupted; the same processes follow the promotion', async () => {
    const prefix = uniquePrefix('failover');
    gateway = await startTestGateway(sentinels, prefix);
    const workerEnv = (id: string) => ({
      QUEUE_PREFIX: prefix,
      WORKER_ID: id,
      WORKER_CAPACITY: '4',
      CHECKPOINT_EVERY_TOKENS: '8',
      // One row per decode step, as the reference decodes: a step's logits can differ in their
      // last bits with the number of rows, and a sampled token at a near-tie with them (line 4
      // of this batch, index 31, with 4 rows per step and no fault at all).
      ENGINE_MAX_BATCH: '1',
    });
    workers.push(
      await startWorker(sentinels, workerEnv('worker-1')),
      await startWorker(sentinels, workerEnv('worker-2')),
    );
    const pids = workers.map((worker) => worker.pid).sort();

    const client = new TestProducer(sentinels.target, prefix);
    producer = client;
    // The failover is deliberate: this client's connection errors meanwhile are expected.
    client.redis.on('error', () => undefined);
    const openai = new OpenAI({ apiKey: Keys.alice, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
    const requests = batchRequests(LINES, MAX_TOKENS);
    const batchId = await submitBatch(openai, requests);
    const jobIds = requests.map((_request, line) => lineJobId(batchId, line));
    const counts = async () => Promise.all(jobIds.map((jobId) => client.tokenCount(jobId)));
    await waitFor(async () => (await counts()).every((count) => count >= 30), {
      timeoutMs: 30_000,
      message: 'every line to stream 30 tokens',
    });
    const atKill = await counts();
    await sentinels.primary.stop('SIGKILL');
    // Every line was mid-way when the primary died.
    for (const [line, count] of atKill.entries())
      expect(count, `line ${line}`).toBeLessThan(MAX_TOKENS);

    // The sentinels promote the replica: each of them now names it, and it says it is a primary.
    await sentinels.waitForSentinels(
      (master) => master.port === String(sentinels.replica.port),
      30_000,
    );
    const promotedAt = Date.now();
    const promoted = new Redis(sentinels.replica.port, '127.0.0.1');
    expect(((await promoted.call('ROLE')) as unknown[])[0]).toBe('master');
    promoted.disconnect();

    const batch = await waitForBatch(openai, batchId, 90_000);
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

    // The original processes, heartbeating to the promoted primary.
    await waitFor(
      async () => {
        const after = await readiness(gateway?.url ?? '').catch(() => undefined);
        return (
          after?.status === 200 &&
          after.body.workers.list.every((worker) => Date.parse(worker.heartbeatAt) > promotedAt)
        );
      },
      { timeoutMs: 10_000, message: 'both workers heartbeating since the promotion' },
    );
    const after = await readiness(gateway.url);
    expect(after.body.workers.list.map((worker) => worker.pid).sort()).toEqual(pids);
    for (const service of [gateway.service, ...workers]) {
      expect(service.child.exitCode, service.name).toBeNull();
    }
  }, 150_000);
});
