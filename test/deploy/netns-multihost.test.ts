import { Job } from 'bullmq';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobProgress } from '#contracts';
import type { ServiceProcess } from '#processes';
import { TEST_MODEL_ID, uniquePrefix } from '#testing';
import { Keys } from '../gateway/support/harness.js';
import { waitFor } from '../support/wait.js';
import { TestProducer } from '../worker/support.js';
import {
  batchOutputTexts,
  batchRequests,
  type BatchRequest,
  expectStreamMatchesReference,
  lineJobId,
  ReferenceGenerator,
  submitBatch,
  waitForBatch,
  type ReferenceRun,
} from './support.js';
import {
  networkNamespacesUnavailable,
  startGatewayOnHost,
  startRedisOnHost,
  startWorkerOnHost,
  VirtualNetwork,
} from './support-netns.js';

/**
 * Many hosts sharing one Redis, on one machine: Redis, the gateway and two workers each run in a
 * network namespace of their own with their own address, connected through a virtual switch.
 * Mid-batch, worker host A loses its network (the switch port goes down, the process keeps
 * running): its locks expire, BullMQ moves its jobs back, host B resumes them from their
 * checkpoints and streams, and the batch completes with every line equal to an uninterrupted
 * in-process run. A's cable is plugged back in once B holds its jobs, so A's buffered writes for
 * jobs it no longer owns reach Redis too: readers must still see every token exactly once. The
 * test process reaches Redis and the gateway through a port of its own on the switch; the hosts
 * have no route anywhere else.
 */
const unavailable = networkNamespacesUnavailable();
if (unavailable !== undefined) {
  process.stderr.write(`netns-multihost: skipped, ${unavailable}\n`);
}

/** Lines in the batch; with two sequences per worker, each host holds two of them. */
const LINES = 4;
/** Tokens per line: long enough that A's lines are mid-generation when it is cut off. */
const MAX_TOKENS = 1200;
const CAPACITY = 2;

describe.skipIf(unavailable !== undefined)(
  `many hosts on one Redis, in network namespaces${unavailable === undefined ? '' : ` (skipped: ${unavailable})`}`,
  () => {
    let network: VirtualNetwork | undefined;
    const services: ServiceProcess[] = [];
    let producer: TestProducer | undefined;
    let reference: ReferenceGenerator | undefined;

    beforeAll(async () => {
      reference = await ReferenceGenerator.start();
    });
    const referenceOf = async (request: BatchRequest): Promise<ReferenceRun> => {
      if (reference === undefined) throw new Error('the reference engine did not start');
      return reference.run(request);
    };

    afterAll(async () => {
      await producer?.close();
      await Promise.all(services.splice(0).map((service) => service.stop('SIGKILL')));
      network?.destroy();
      expect(network?.leftovers() ?? []).toEqual([]);
      await reference?.close();
    });

    it('resumes a cut-off host’s jobs on the other host; the batch completes with nothing lost', async () => {
      const hosts = VirtualNetwork.create(['redis', 'gateway', 'worker-a', 'worker-b']);
      network = hosts;
      const prefix = uniquePrefix('netns');
      const redis = await startRedisOnHost(hosts.host('redis'));
      services.push(redis.service);
      const gateway = await startGatewayOnHost(hosts.host('gateway'), redis.url, {
        QUEUE_PREFIX: prefix,
        API_KEYS: `alice:${Keys.alice}`,
        RATE_LIMIT_RPM: '0',
      });
      services.push(gateway.service);
      const workerEnv = (id: string) => ({
        QUEUE_PREFIX: prefix,
        WORKER_ID: id,
        WORKER_CAPACITY: String(CAPACITY),
        CHECKPOINT_EVERY_TOKENS: '8',
      });
      services.push(
        await startWorkerOnHost(hosts.host('worker-a'), redis.url, workerEnv('host-a')),
        await startWorkerOnHost(hosts.host('worker-b'), redis.url, workerEnv('host-b')),
      );

      // The test process reaches Redis and the gateway over its own switch port.
      const client = new TestProducer(redis.url, prefix);
      producer = client;
      const openai = new OpenAI({
        apiKey: Keys.alice,
        baseURL: `${gateway.url}/v1`,
        maxRetries: 0,
      });
      const ready = (await (await fetch(`${gateway.url}/health/ready`)).json()) as {
        workers: { list: { id: string }[] };
      };
      expect(ready.workers.list.map((worker) => worker.id)).toEqual(['host-a', 'host-b']);

      const requests = batchRequests(LINES, MAX_TOKENS);
      const batchId = await submitBatch(openai, requests);
      const jobIds = requests.map((_request, line) => lineJobId(batchId, line));
      const queue = client.queue(TEST_MODEL_ID);
      const holder = async (jobId: string): Promise<string | undefined> => {
        const job = await Job.fromId(queue, jobId);
        return (job?.progress as Partial<JobProgress> | undefined)?.worker?.id;
      };

      // Every line running, two per host, and A's lines past their first checkpoints.
      let onA: string[] = [];
      await waitFor(
        async () => {
          const holders = await Promise.all(jobIds.map(holder));
          onA = jobIds.filter((_jobId, line) => holders[line] === 'host-a');
          const onB = holders.filter((id) => id === 'host-b');
          if (onA.length !== CAPACITY || onB.length !== CAPACITY) return false;
          const streamed = await Promise.all(onA.map((jobId) => client.tokenCount(jobId)));
          return streamed.every((count) => count >= 40);
        },
        { timeoutMs: 30_000, message: 'two lines running on each host' },
      );

      hosts.disconnect('worker-a');
      for (const jobId of onA) expect(await client.tokenCount(jobId)).toBeLessThan(MAX_TOKENS);

      // A's locks expire (8 s) and the next stalled check moves its lines to B.
      await waitFor(
        async () => (await Promise.all(onA.map(holder))).every((id) => id === 'host-b'),
        { timeoutMs: 40_000, message: 'host B to take over host A’s lines' },
      );
      // Once back, A's renewal of the locks it lost fails: it abandons those lines (cancels their
      // sequences and writes nothing more), though a write it had in flight may still land.
      hosts.reconnect('worker-a');

      const batch = await waitForBatch(openai, batchId, 60_000);
      expect(batch.request_counts).toEqual({ total: LINES, completed: LINES, failed: 0 });
      expect(batch.error_file_id).toBeNull();
      const references: ReferenceRun[] = [];
      for (const request of requests) references.push(await referenceOf(request));
      // One output line per request, in input order: none lost, none written twice.
      expect(await batchOutputTexts(openai, batch)).toEqual(
        requests.map((request, line) => [request.customId, references[line]?.text]),
      );

      for (const [line, jobId] of jobIds.entries()) {
        const expected = references[line];
        if (expected === undefined) throw new Error(`no reference for line ${line}`);
        expect(expected.tokens).toHaveLength(MAX_TOKENS);
        const repeated = expectStreamMatchesReference(await client.stream(jobId), expected, jobId);
        // A's late writes may repeat indexes of the lines it lost (with the same tokens, as
        // checked above); B's own lines were written once.
        if (!onA.includes(jobId)) expect(repeated, jobId).toBe(0);
        expect(await (await Job.fromId(queue, jobId))?.getState(), jobId).toBe('completed');
      }
      // A was partitioned, not killed: every process still runs.
      for (const service of services) expect(service.child.exitCode, service.name).toBeNull();
    }, 120_000);
  },
);
