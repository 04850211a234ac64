import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from 'ioredis';
import { createLogger, createRedis, onServingConnectionLost, type RedisClient } from '#cluster';
import { askNode, TestRedisCluster, uniqueTaggedPrefix, type ClusterShard } from '#testing';
import { waitFor } from '../support/wait.js';

/**
 * What a worker takes for a possible loss of acknowledged writes in Cluster mode, on a private
 * six-node cluster (three primaries, a replica each): the shard that serves the key's slot
 * failing over is reported; another shard's primary dying is not, though the client was
 * connected to it and follows its failover too.
 */

/** Long enough for the cluster to elect the replica on a slow machine before it is forced. */
const FORCE_FAILOVER_AFTER_MS = 8000;

describe('onServingConnectionLost on a Redis Cluster', () => {
  let cluster: TestRedisCluster;
  let client: RedisClient | undefined;

  beforeAll(async () => {
    cluster = await TestRedisCluster.start({ replicasPerPrimary: 1 });
  }, 60_000);
  afterAll(async () => {
    client?.disconnect();
    await cluster.stop();
  });

  /** A key of the same prefix's kind that another shard serves. */
  async function keyOfAnotherShard(ours: ClusterShard): Promise<[string, ClusterShard]> {
    for (let index = 0; ; index += 1) {
      const key = `{other-${index}}:probe`;
      const shard = await cluster.shardOf(key);
      if (shard.primary !== ours.primary) return [key, shard];
    }
  }

  it('reports a failover of the slot it serves, not of another shard', async () => {
    const key = `${uniqueTaggedPrefix('loss')}:probe`;
    const redis = createRedis(cluster.target, 'queue', 'loss-test', createLogger('loss', 'silent'));
    client = redis;
    if (!(redis instanceof Cluster)) throw new Error('a cluster target gives a Cluster client');
    let losses = 0;
    onServingConnectionLost(redis, key, () => {
      losses += 1;
    });
    const ours = await cluster.shardOf(key);
    const [otherKey, other] = await keyOfAnotherShard(ours);
    // Connections to both primaries are open: a write went through each.
    await redis.set(key, 'before');
    await redis.set(otherKey, 'before');

    const [otherReplica] = other.replicas;
    if (otherReplica === undefined) throw new Error('the other shard has no replica');
    await other.primary.stop('SIGKILL');
    await cluster.waitForPromotion(otherReplica, FORCE_FAILOVER_AFTER_MS);
    // The write waits out the failover: once it is acknowledged, the client's slot table names
    // the promoted replica, so it has seen everything it would report.
    await redis.set(otherKey, 'after');
    expect(redis.slots[other.slot]?.[0]).toBe(`127.0.0.1:${otherReplica.port}`);
    expect(losses).toBe(0);

    // A planned failover of our slot loses nothing, but nothing tells the client so: it reports
    // the new primary as a loss too, once it learns of it (here from the write's MOVED reply).
    const [ourReplica] = ours.replicas;
    if (ourReplica === undefined) throw new Error("the key's shard has no replica");
    await askNode(ourReplica.port, 'CLUSTER', 'FAILOVER');
    await cluster.waitForPromotion(ourReplica, FORCE_FAILOVER_AFTER_MS);
    await redis.set(key, 'after');
    await waitFor(() => losses > 0, { message: 'the failover of our slot to be reported' });
  }, 60_000);
});
