import OpenAI from 'openai';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServiceProcess } from '#processes';
import {
  startWorker,
  TestRedisCluster,
  uniqueTaggedPrefix,
  type ClusterShard,
  type TestGateway,
} from '#testing';
import { Keys, startTestGateway } from '../gateway/support/harness.js';
import { waitFor } from '../support/wait.js';
import { TestProducer } from '../worker/support.js';
import {
  batchOutputTexts,
  batchRequests,
  expectStreamMatchesReference,
  lineJobId,
  readiness,
  ReferenceGenerator,
  replicationOffset,
  submitBatch,
  waitForBatch,
  type ReferenceRun,
} from './support.js';

/**
 * Redis Cluster failover mid-batch: three primaries with a replica each; a gateway and two
 * workers reach it through REDIS_CLUSTER_NODES. Every key of the queue prefix shares one hash
 * tag, so one shard holds them all. While 8 seeded batch lines generate, that shard's primary is
 * SIGKILLed; its replica takes over, and the same gateway and worker processes carry on without a
 * restart. Every line completes with the text of an uninterrupted in-process run, and a
 * de-duplicating reader sees each stream index once.
 *
 * As in the Sentinel test, the replica is stopped and its link cut a second before the primary
 * dies, so that the promoted replica lacks writes the primary acknowledged (the replication
 * offsets show it). The Cluster client reports no `close` while other nodes answer: the workers
 * notice the loss of the node that serves their slot (onServingConnectionLost), stop writing and
 * hand their jobs back, to resume from what the promoted replica holds.
 */

const LINES = 8;
/** Tokens per line: long enough that every line is mid-generation when the primary dies. */
const MAX_TOKENS = 1000;
/**
 * The replica normally starts its election about 3 s after the primary dies (2 s node timeout,
 * then a random delay); a slower machine gets until then before the test forces the election.
 */
const FORCE_FAILOVER_AFTER_MS = 8000;

describe('Redis Cluster failover of the shard that holds the queue, during a batch', () => {
  let cluster: TestRedisCluster;
  let gateway: TestGateway | undefined;
  const workers: ServiceProcess[] = [];
  let producer: TestProducer | undefined;
  let reference: ReferenceGenerator | undefined;

  beforeAll(async () => {
    reference = await ReferenceGenerator.start();
    cluster = await TestRedisCluster.start({ replicasPerPrimary: 1 });
  }, 60_000);

  afterAll(async () => {
    await producer?.close();
    await Promise.all([
      ...workers.splice(0).map((worker) => worker.stop('SIGKILL')),
      gateway?.service.stop('SIGKILL'),
    ]);
    await cluster.stop();
    await reference?.close();
  });

  it('completes every line once, exactly as uninterrupted; the same processes follow the promotion', async () => {
    const prefix = uniqueTaggedPrefix('cluster-failover');
    gateway = await startTestGateway(cluster, prefix);
    const workerEnv = (id: string) => ({
      QUEUE_PREFIX: prefix,
      WORKER_ID: id,
      WORKER_CAPACITY: '4',
      CHECKPOINT_EVERY_TOKENS: '8',
    });
    workers.push(
      await startWorker(cluster, workerEnv('worker-1')),
      await startWorker(cluster, workerEnv('worker-2')),
    );
    const pids = workers.map((worker) => worker.pid).sort();

    const client = new TestProducer(cluster.target, prefix);
    producer = client;
    // The failover is deliberate: this client's connection errors meanwhile are expected.
    client.redis.on('error', () => undefined);
    const openai = new OpenAI({ apiKey: Keys.alice, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
    // Prompts of at most 16 bytes (tokens, with the test model's byte tokenizer) are prefilled
    // in one chunk whatever the load, so every line's state, and text, is the reference's.
    const requests = batchRequests(LINES, MAX_TOKENS).map((request, line) => ({
      ...request,
      prompt: `Story ${line}:`,
    }));
    const batchId = await submitBatch(openai, requests);
    const jobIds = requests.map((_request, line) => lineJobId(batchId, line));
    const counts = async () => Promise.all(jobIds.map((jobId) => client.tokenCount(jobId)));
    await waitFor(async () => (await counts()).every((count) => count >= 30), {
      timeoutMs: 30_000,
      message: 'every line to stream 30 tokens',
    });

    const shard: ClusterShard = await cluster.shardOf(prefix);
    const [replica] = shard.replicas;
    if (replica === undefined) throw new Error(`the primary of slot ${shard.slot} has no replica`);
    // Make the asynchronous replication lose acknowledged writes for sure: the replica stops
    // (SIGSTOP) and the primary drops its link to it, then goes on acknowledging tokens and
    // checkpoints for a second; then the primary dies and the replica wakes up without them.
    process.kill(replica.pid, 'SIGSTOP');
    const primary = new Redis(shard.primary.port, '127.0.0.1');
    await primary.call('CLIENT', 'KILL', 'TYPE', 'replica');
    primary.disconnect();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const atKill = await counts();
    const acknowledgedOffset = await replicationOffset(shard.primary.port, 'master_repl_offset');
    await shard.primary.stop('SIGKILL');
    process.kill(replica.pid, 'SIGCONT');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const replicatedOffset = await replicationOffset(replica.port, 'slave_repl_offset');
    expect(
      replicatedOffset,
      'replication bytes the replica had when the primary died',
    ).toBeLessThan(acknowledgedOffset);
    // Every line was mid-way when the primary died.
    for (const [line, count] of atKill.entries())
      expect(count, `line ${line}`).toBeLessThan(MAX_TOKENS);

    // The replica is elected, or forced to take over if the election is slow (FORCE skips only
    // the wait for the other primaries to agree that its primary failed).
    await cluster.waitForPromotion(replica, FORCE_FAILOVER_AFTER_MS);
    const promotedAt = Date.now();
    expect((await cluster.shardOf(prefix)).primary.port).toBe(replica.port);

    const batch = await waitForBatch(openai, batchId, 90_000);
    expect(batch.request_counts).toEqual({ total: LINES, completed: LINES, failed: 0 });
    expect(batch.error_file_id).toBeNull();
    const references: ReferenceRun[] = [];
    for (const request of requests) {
      if (reference === undefined) throw new Error('the reference engine did not start');
      references.push(await reference.run(request));
    }
    for (const [line, jobId] of jobIds.entries()) {
      const expected = references[line];
      if (expected === undefined) throw new Error(`no reference for line ${line}`);
      expect(expected.tokens).toHaveLength(MAX_TOKENS);
      // Commands in flight when the primary died are sent again to the promoted one and may
      // land after the hole the lost writes left: each index once, in any order.
      expectStreamMatchesReference(await client.stream(jobId), expected, jobId, 'any order');
    }

    // One output line per request, in input order: none lost, none written twice.
    expect(await batchOutputTexts(openai, batch)).toEqual(
      requests.map((request, line) => [request.customId, references[line]?.text]),
    );
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
