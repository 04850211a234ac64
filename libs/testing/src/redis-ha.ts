import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { RedisTarget } from '#config';
import {
  findRedisServer,
  freePort,
  RedisSentinelSet,
  startRedisServer,
  type RedisServer,
} from '#processes';
import { askNode, parseClusterNodes } from './cluster-nodes.js';

/**
 * Redis in its high-availability shapes for tests, all on loopback ports with private data dirs:
 * a primary with a replica watched by three sentinels, and a three-primary Redis Cluster. Both
 * are built from the plain `redis-server` binary (`--sentinel`, `--cluster-enabled`) and
 * `redis-cli` (Debian's redis-tools, which redis-server depends on), and removed by `stop()`.
 */

/** How a test hands a Redis to processes (environment) and to its own clients (target). */
export interface RedisEndpoint {
  readonly env: Record<string, string>;
  readonly target: RedisTarget;
}

/** The name the sentinels monitor the primary under. */
export const SENTINEL_MASTER_NAME = 'dijiang-test';

/**
 * A primary, one replica and three sentinels (libs/processes' {@link RedisSentinelSet}) in a
 * private temporary dir. The primary counts as down 1 s after its last answer (`dijiang up`
 * waits 5 s, production keeps the default 30 s against false failovers), and a failover is
 * retried after 4 s if it stalls.
 */
export class TestSentinels implements RedisEndpoint {
  private constructor(
    private readonly set: RedisSentinelSet,
    private readonly dir: string,
  ) {}

  static async start(): Promise<TestSentinels> {
    const dir = mkdtempSync(join(tmpdir(), 'dijiang-sentinel-'));
    try {
      const set = await RedisSentinelSet.start({
        dir,
        masterName: SENTINEL_MASTER_NAME,
        appendOnly: false,
        downAfterMs: 1000,
        failoverTimeoutMs: 4000,
      });
      return new TestSentinels(set, dir);
    } catch (error) {
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
  }

  get primary(): RedisServer {
    return this.set.primary;
  }

  get replica(): RedisServer {
    return this.set.replica;
  }

  get env(): Record<string, string> {
    return {
      REDIS_SENTINELS: this.set.sentinelAddresses,
      REDIS_SENTINEL_NAME: SENTINEL_MASTER_NAME,
    };
  }

  get target(): RedisTarget {
    return {
      mode: 'sentinel',
      sentinels: this.set.sentinelPorts.map((port) => ({ host: '127.0.0.1', port })),
      name: SENTINEL_MASTER_NAME,
      password: undefined,
      sentinelPassword: undefined,
    };
  }

  /** Polls every sentinel's view of the primary until `holds` is true for all of them. */
  async waitForSentinels(
    holds: (master: Record<string, string>) => boolean,
    timeoutMs = 20_000,
  ): Promise<void> {
    await this.set.waitForSentinels(holds, timeoutMs);
  }

  async stop(): Promise<void> {
    await this.set.stop('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface TestClusterOptions {
  /** 1: six nodes, each primary with a replica that takes over when it dies. @defaultValue 0 */
  replicasPerPrimary?: 0 | 1;
}

/** The primary that serves a slot, and its replicas. */
export interface ClusterShard {
  readonly slot: number;
  readonly primary: RedisServer;
  readonly replicas: readonly RedisServer[];
}

/**
 * Three primaries sharing the 16,384 slots, with no replica or one each. A node counts as down
 * 5 s after its last answer without replicas (a busy machine must not fail the cluster), 2 s with
 * them, so that a replica takes over within seconds (production keeps the 15 s default).
 */
export class TestRedisCluster implements RedisEndpoint {
  private constructor(
    readonly nodes: readonly RedisServer[],
    private readonly dir: string,
  ) {}

  static async start(options: TestClusterOptions = {}): Promise<TestRedisCluster> {
    const replicasPerPrimary = options.replicasPerPrimary ?? 0;
    const nodeTimeoutMs = replicasPerPrimary > 0 ? 2000 : 5000;
    const dir = mkdtempSync(join(tmpdir(), 'dijiang-cluster-'));
    const nodes: RedisServer[] = [];
    try {
      for (let index = 0; index < 3 * (1 + replicasPerPrimary); index += 1) {
        const port = await freePort();
        const nodeDir = join(dir, `node-${index}`);
        nodes.push(
          await startRedisServer({
            port,
            dir: nodeDir,
            appendOnly: false,
            extraArgs: [
              '--cluster-enabled',
              'yes',
              '--cluster-config-file',
              join(nodeDir, 'nodes.conf'),
              '--cluster-node-timeout',
              String(nodeTimeoutMs),
            ],
          }),
        );
      }
      const cli = join(dirname(findRedisServer() ?? '/usr/bin/redis-server'), 'redis-cli');
      const created = spawnSync(
        cli,
        [
          '--cluster',
          'create',
          ...nodes.map((node) => `127.0.0.1:${node.port}`),
          '--cluster-replicas',
          String(replicasPerPrimary),
          '--cluster-yes',
        ],
        { encoding: 'utf8', timeout: 30_000 },
      );
      if (created.status !== 0) {
        throw new Error(
          `redis-cli --cluster create failed (${cli}; Debian: apt-get install redis-tools):\n` +
            `${created.stdout}${created.stderr}`,
        );
      }
      const cluster = new TestRedisCluster(nodes, dir);
      await cluster.waitUntilOk();
      // A replica can take over only once it holds its primary's data.
      await cluster.waitUntil('every replica in sync', async () => {
        const infos = await Promise.all(
          nodes.map(async (node) => (await askNode(node.port, 'INFO', 'replication')) as string),
        );
        return infos.every(
          (info) => info.includes('role:master') || info.includes('master_link_status:up'),
        );
      });
      return cluster;
    } catch (error) {
      await Promise.all(nodes.map((node) => node.stop('SIGKILL')));
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
  }

  get env(): Record<string, string> {
    return { REDIS_CLUSTER_NODES: this.nodes.map((node) => `127.0.0.1:${node.port}`).join(',') };
  }

  get target(): RedisTarget {
    return {
      mode: 'cluster',
      nodes: this.nodes.map((node) => ({ host: '127.0.0.1', port: node.port })),
      password: undefined,
    };
  }

  /** The nodes whose process runs (a test may have killed some). */
  private get liveNodes(): RedisServer[] {
    return this.nodes.filter(
      (node) => node.child.exitCode === null && node.child.signalCode === null,
    );
  }

  /** The shard that serves `key` (its hash tag, if it has one), as a live node sees it. */
  async shardOf(key: string): Promise<ClusterShard> {
    const [asked] = this.liveNodes;
    if (asked === undefined) throw new Error('no cluster node is running');
    const slot = (await askNode(asked.port, 'CLUSTER', 'KEYSLOT', key)) as number;
    const views = parseClusterNodes((await askNode(asked.port, 'CLUSTER', 'NODES')) as string);
    const owner = views.find(
      (view) =>
        view.flags.includes('master') &&
        view.slotRanges.some(([first, last]) => first <= slot && slot <= last),
    );
    const serverAt = (port: number): RedisServer => {
      const server = this.nodes.find((node) => node.port === port);
      if (server === undefined) throw new Error(`no node of this cluster listens on ${port}`);
      return server;
    };
    if (owner === undefined) throw new Error(`no primary serves slot ${slot}`);
    return {
      slot,
      primary: serverAt(owner.port),
      replicas: views
        .filter((view) => view.primaryId === owner.id)
        .map((view) => serverAt(view.port)),
    };
  }

  /**
   * Waits until `replica` is a primary and every live node reports the cluster ok. The replica
   * starts an election once the other primaries agree its primary failed; if it is still a replica
   * after `forceAfterMs`, `CLUSTER FAILOVER FORCE` starts the election without waiting for it.
   */
  async waitForPromotion(replica: RedisServer, forceAfterMs: number): Promise<void> {
    const forceAt = Date.now() + forceAfterMs;
    let forced = false;
    await this.waitUntil(`the replica :${replica.port} promoted`, async () => {
      const [role] = (await askNode(replica.port, 'ROLE')) as string[];
      if (role === 'master') return true;
      if (!forced && Date.now() > forceAt) {
        forced = true;
        await askNode(replica.port, 'CLUSTER', 'FAILOVER', 'FORCE');
      }
      return false;
    });
    await this.waitUntilOk();
  }

  /** Every live node reports `cluster_state:ok` (all slots covered, the nodes agree). */
  private async waitUntilOk(): Promise<void> {
    await this.waitUntil('cluster_state:ok on every node', async () => {
      const states = await Promise.all(
        this.liveNodes.map(async (node) => (await askNode(node.port, 'CLUSTER', 'INFO')) as string),
      );
      return states.every((info) => info.includes('cluster_state:ok'));
    });
  }

  private async waitUntil(
    what: string,
    holds: () => Promise<boolean>,
    timeoutMs = 20_000,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await holds())) {
      if (Date.now() > deadline) throw new Error(`the test cluster did not reach: ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop('SIGKILL')));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
