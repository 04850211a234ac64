import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Redis } from 'ioredis';
import type { RedisTarget } from '#config';
import {
  findRedisServer,
  freePort,
  REDIS_SERVER_MISSING,
  spawnService,
  startRedisServer,
  type RedisServer,
  type ServiceProcess,
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
 * Sentinel settings: the primary counts as down 1 s after its last answer (production keeps the
 * default 30 s against false failovers), two of three sentinels must agree, and a failover is
 * retried after 4 s if it stalls.
 */
function sentinelConfig(port: number, dir: string, primaryPort: number): string {
  return [
    `port ${port}`,
    'bind 127.0.0.1',
    `dir ${dir}`,
    `sentinel monitor ${SENTINEL_MASTER_NAME} 127.0.0.1 ${primaryPort} 2`,
    `sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME} 1000`,
    `sentinel failover-timeout ${SENTINEL_MASTER_NAME} 4000`,
    `sentinel parallel-syncs ${SENTINEL_MASTER_NAME} 1`,
    '',
  ].join('\n');
}

/** A primary, one replica and three sentinels. */
export class TestSentinels implements RedisEndpoint {
  private constructor(
    readonly primary: RedisServer,
    readonly replica: RedisServer,
    readonly sentinels: readonly ServiceProcess[],
    readonly sentinelPorts: readonly number[],
    private readonly dir: string,
  ) {}

  static async start(): Promise<TestSentinels> {
    const binary = findRedisServer();
    if (binary === undefined) throw new Error(REDIS_SERVER_MISSING);
    const dir = mkdtempSync(join(tmpdir(), 'dijiang-sentinel-'));
    const started: ServiceProcess[] = [];
    try {
      const primary = await startRedisServer({
        port: await freePort(),
        dir: join(dir, 'primary'),
        appendOnly: false,
      });
      started.push(primary);
      const replica = await startRedisServer({
        port: await freePort(),
        dir: join(dir, 'replica'),
        appendOnly: false,
        extraArgs: ['--replicaof', '127.0.0.1', String(primary.port)],
        readyText: 'MASTER <-> REPLICA sync: Finished with success',
      });
      started.push(replica);
      const sentinelPorts: number[] = [];
      const sentinels: ServiceProcess[] = [];
      for (let index = 0; index < 3; index += 1) {
        const port = await freePort();
        // A sentinel rewrites its configuration file (what it learnt), so each has its own.
        const file = join(dir, `sentinel-${index}`, 'sentinel.conf');
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, sentinelConfig(port, dirname(file), primary.port));
        const sentinel = await spawnService(`sentinel :${port}`, binary, [file, '--sentinel'], {
          env: process.env,
          isReady: (line) => line.includes('+monitor master'),
          readyTimeoutMs: 15_000,
        });
        started.push(sentinel);
        sentinels.push(sentinel);
        sentinelPorts.push(port);
      }
      const set = new TestSentinels(primary, replica, sentinels, sentinelPorts, dir);
      // A failover needs the sentinels to know the replica and each other (learnt by INFO and
      // hello messages over the first seconds): wait until each reports both.
      await set.waitForSentinels(
        (master) => master['num-slaves'] === '1' && master['num-other-sentinels'] === '2',
      );
      return set;
    } catch (error) {
      await Promise.all(started.map((service) => service.stop('SIGKILL')));
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
  }

  get env(): Record<string, string> {
    return {
      REDIS_SENTINELS: this.sentinelPorts.map((port) => `127.0.0.1:${port}`).join(','),
      REDIS_SENTINEL_NAME: SENTINEL_MASTER_NAME,
    };
  }

  get target(): RedisTarget {
    return {
      mode: 'sentinel',
      sentinels: this.sentinelPorts.map((port) => ({ host: '127.0.0.1', port })),
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
    const deadline = Date.now() + timeoutMs;
    let last: Record<string, string>[] = [];
    while (Date.now() < deadline) {
      last = await Promise.all(this.sentinelPorts.map((port) => sentinelMasterView(port)));
      if (last.every(holds)) return;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(`sentinels did not reach the expected state: ${JSON.stringify(last)}`);
  }

  async stop(): Promise<void> {
    await Promise.all(
      [...this.sentinels, this.primary, this.replica].map((service) => service.stop('SIGKILL')),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `SENTINEL MASTER name` of the sentinel on `port`, as a field map. */
async function sentinelMasterView(port: number): Promise<Record<string, string>> {
  const sentinel = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0 });
  try {
    await sentinel.connect();
    const reply = (await sentinel.call('SENTINEL', 'MASTER', SENTINEL_MASTER_NAME)) as string[];
    const fields: Record<string, string> = {};
    for (let index = 0; index + 1 < reply.length; index += 2) {
      fields[reply[index] ?? ''] = reply[index + 1] ?? '';
    }
    return fields;
  } finally {
    sentinel.disconnect();
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
