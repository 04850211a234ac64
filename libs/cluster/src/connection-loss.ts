import { Cluster, Command, type Redis } from 'ioredis';
import type { RedisClient } from './redis.js';

/**
 * Calls `onLost` whenever the connection that serves `key` may have lost writes Redis had
 * acknowledged: replication is asynchronous, so a primary that dies (or is replaced) takes with
 * it what it had not yet copied to the replica that takes over. `key` stands for all the keys
 * the caller writes: in Cluster mode they share its hash slot (one hash-tagged prefix).
 *
 * - One server or a sentinel-managed primary: the client's one connection closed.
 * - Redis Cluster: the client's own `close` comes only when every node is gone, so the nodes are
 *   watched one by one: the connection to the primary that owns the slot closed (it died, was
 *   partitioned, or closed its clients when demoted), or a slot refresh (the periodic one, or
 *   the one a MOVED reply or a failed command triggers) names another primary for the slot. The
 *   second also fires on a planned move (a manual failover or a resharding) that loses nothing:
 *   the caller then resumes from what Redis holds without need, which costs time, not output.
 *   After a MOVED reply, that command and those sent until the refresh ends reach the new
 *   primary before `onLost`, as commands in flight at a drop are sent again after the
 *   reconnection: a few writes land after the hole, and readers order them by index.
 *
 * `onLost` may be called several times for one loss (each failed reconnection to a dead
 * primary closes again); it is also called when the caller quits the client itself.
 */
export function onServingConnectionLost(redis: RedisClient, key: string, onLost: () => void): void {
  redis.on('close', onLost);
  if (redis instanceof Cluster)
    watchSlotOwner(redis, new Command('exists', [key]).getSlot(), onLost);
}

/** `host:port`, as the Cluster client names nodes in its slot table. */
const nodeKey = (node: Redis): string => `${node.options.host}:${node.options.port}`;

function watchSlotOwner(cluster: Cluster, slot: number, onLost: () => void): void {
  // The table holds [primary, ...replicas] per slot; it is empty until the first refresh.
  const slotOwner = (): string | undefined => cluster.slots[slot]?.[0];
  const watchNode = (node: Redis): void => {
    // The slot table still names the closed node here: it is refreshed only afterwards.
    node.on('close', () => {
      if (nodeKey(node) === slotOwner()) onLost();
    });
  };
  for (const node of cluster.nodes('all')) watchNode(node);
  // A node's connection is never reopened (createRedis sets no clusterNodeRetryStrategy): a
  // node that comes back, or is reached again after a refresh, is a new connection.
  cluster.on('+node', watchNode);
  let knownOwner = slotOwner();
  cluster.on('refresh', () => {
    const owner = slotOwner();
    if (knownOwner !== undefined && owner !== knownOwner) onLost();
    knownOwner = owner;
  });
}
