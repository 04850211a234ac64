import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Redis } from 'ioredis';
import type { RedisTarget } from '#config';
import {
  findRedisServer,
  freePort,
  RedisSentinelSet,
  startRedisServer,
  type RedisServer,
} from '#processes';

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

/** Three primaries sharing the 16,384 slots, no replicas. */
export class TestRedisCluster implements RedisEndpoint {
  private constructor(
    readonly nodes: readonly RedisServer[],
    private readonly dir: string,
  ) {}

  static async start(): Promise<TestRedisCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'dijiang-cluster-'));
    const nodes: RedisServer[] = [];
    try {
      for (let index = 0; index < 3; index += 1) {
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
              '5000',
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
          '0',
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

  /** Every node reports `cluster_state:ok` (all slots covered, the nodes agree). */
  private async waitUntilOk(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const states = await Promise.all(
        this.nodes.map(async (node) => {
          const client = new Redis(node.port, '127.0.0.1', { maxRetriesPerRequest: 0 });
          try {
            return (await client.call('CLUSTER', 'INFO')) as string;
          } finally {
            client.disconnect();
          }
        }),
      );
      if (states.every((info) => info.includes('cluster_state:ok'))) return;
      if (Date.now() > deadline) throw new Error(`cluster not ok:\n${states.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop('SIGKILL')));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
