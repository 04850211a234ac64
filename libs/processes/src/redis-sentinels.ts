import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './ports.js';
import { findRedisServer, REDIS_SERVER_MISSING, startRedisServer } from './redis-server.js';
import type { RedisServer } from './redis-server.js';
import { spawnService, type ServiceProcess } from './service-process.js';

/**
 * A primary, one replica and three sentinels watching them, all redis-server processes (the
 * sentinels are `redis-server FILE --sentinel`, what Debian's redis-sentinel runs) on free
 * loopback ports: the Sentinel mode of `dijiang up` and of the test harness.
 *
 * Under `dir`: `server-1/` and `server-2/` hold the two servers' data, `sentinel-N/` each
 * sentinel's configuration file (a sentinel rewrites its own with what it learns), and `primary`
 * names the server that was the primary when the set last stopped, so that after a failover the
 * next start keeps the promoted server's data as the primary's instead of replicating the stale
 * one over it.
 */

export interface RedisSentinelSetOptions {
  /** Data and configuration of the set (created if missing, kept after `stop`). */
  dir: string;
  /** The name the sentinels monitor the primary under (`REDIS_SENTINEL_NAME`). */
  masterName: string;
  /** Persist every write of both servers to an append-only file. */
  appendOnly: boolean;
  /** The primary counts as down this long after its last answer (`down-after-milliseconds`). */
  downAfterMs: number;
  /** A stalled failover is retried after this long (`failover-timeout`). */
  failoverTimeoutMs: number;
  /** Own process groups, so a terminal's Ctrl-C reaches only the launcher that owns them. */
  detached?: boolean;
}

const SERVER_DIRS = ['server-1', 'server-2'] as const;
const SENTINEL_COUNT = 3;
/** Sentinels that must agree the primary is down before a failover: a majority of three. */
const QUORUM = 2;

function sentinelConfig(
  port: number,
  dir: string,
  primaryPort: number,
  options: RedisSentinelSetOptions,
): string {
  const name = options.masterName;
  return [
    `port ${port}`,
    'bind 127.0.0.1',
    `dir ${dir}`,
    `sentinel monitor ${name} 127.0.0.1 ${primaryPort} ${QUORUM}`,
    `sentinel down-after-milliseconds ${name} ${options.downAfterMs}`,
    `sentinel failover-timeout ${name} ${options.failoverTimeoutMs}`,
    `sentinel parallel-syncs ${name} 1`,
    '',
  ].join('\n');
}

export class RedisSentinelSet {
  private constructor(
    readonly primary: RedisServer,
    readonly replica: RedisServer,
    readonly sentinels: readonly ServiceProcess[],
    readonly sentinelPorts: readonly number[],
    readonly masterName: string,
    private readonly dir: string,
    private readonly serverDirOfPort: ReadonlyMap<number, string>,
  ) {}

  static async start(options: RedisSentinelSetOptions): Promise<RedisSentinelSet> {
    const binary = findRedisServer();
    if (binary === undefined) throw new Error(REDIS_SERVER_MISSING);
    mkdirSync(options.dir, { recursive: true });
    const recordFile = join(options.dir, 'primary');
    const recorded = existsSync(recordFile) ? readFileSync(recordFile, 'utf8').trim() : '';
    const [primaryDir, replicaDir] =
      recorded === SERVER_DIRS[1] ? [SERVER_DIRS[1], SERVER_DIRS[0]] : SERVER_DIRS;
    const started: ServiceProcess[] = [];
    try {
      const primary = await startRedisServer({
        port: await freePort(),
        dir: join(options.dir, primaryDir),
        appendOnly: options.appendOnly,
        detached: options.detached ?? false,
      });
      started.push(primary);
      writeFileSync(recordFile, `${primaryDir}\n`);
      const replica = await startRedisServer({
        port: await freePort(),
        dir: join(options.dir, replicaDir),
        appendOnly: options.appendOnly,
        detached: options.detached ?? false,
        extraArgs: ['--replicaof', '127.0.0.1', String(primary.port)],
        readyText: 'MASTER <-> REPLICA sync: Finished with success',
      });
      started.push(replica);
      const sentinelPorts: number[] = [];
      const sentinels: ServiceProcess[] = [];
      for (let index = 1; index <= SENTINEL_COUNT; index += 1) {
        const port = await freePort();
        const sentinelDir = join(options.dir, `sentinel-${index}`);
        mkdirSync(sentinelDir, { recursive: true });
        // Written afresh each start: the ports are new, and what a sentinel learnt in an earlier
        // run (peers, replicas) names processes that are gone.
        const file = join(sentinelDir, 'sentinel.conf');
        writeFileSync(file, sentinelConfig(port, sentinelDir, primary.port, options));
        const sentinel = await spawnService(`sentinel :${port}`, binary, [file, '--sentinel'], {
          env: process.env,
          isReady: (line) => line.includes('+monitor master'),
          readyTimeoutMs: 15_000,
          detached: options.detached ?? false,
        });
        started.push(sentinel);
        sentinels.push(sentinel);
        sentinelPorts.push(port);
      }
      const set = new RedisSentinelSet(
        primary,
        replica,
        sentinels,
        sentinelPorts,
        options.masterName,
        options.dir,
        new Map([
          [primary.port, primaryDir],
          [replica.port, replicaDir],
        ]),
      );
      // A failover needs the sentinels to know the replica and each other (learnt by INFO and
      // hello messages over the first seconds): the set is ready once each reports both.
      await set.waitForSentinels(
        (master) =>
          master['num-slaves'] === '1' &&
          master['num-other-sentinels'] === String(SENTINEL_COUNT - 1),
      );
      return set;
    } catch (error) {
      await Promise.all(started.map((service) => service.stop('SIGKILL')));
      throw error;
    }
  }

  /** Every process of the set: sentinels, then the primary and the replica. */
  get services(): readonly ServiceProcess[] {
    return [...this.sentinels, this.primary, this.replica];
  }

  /** `host:port,…` of the sentinels, as `REDIS_SENTINELS` takes them. */
  get sentinelAddresses(): string {
    return this.sentinelPorts.map((port) => `127.0.0.1:${port}`).join(',');
  }

  /** Polls every sentinel's view of the primary until `holds` is true for all of them. */
  async waitForSentinels(
    holds: (master: Record<string, string>) => boolean,
    timeoutMs = 20_000,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: Record<string, string>[] = [];
    while (Date.now() < deadline) {
      last = await Promise.all(
        this.sentinelPorts.map((port) => sentinelMasterView(port, this.masterName)),
      );
      if (last.every(holds)) return;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(`sentinels did not reach the expected state: ${JSON.stringify(last)}`);
  }

  /**
   * Records which server is the primary now, then stops the sentinels first (so that stopping
   * the primary starts no failover), then both servers.
   */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
    const primaryDir = this.serverDirOfPort.get(await this.currentPrimaryPort());
    if (primaryDir !== undefined) writeFileSync(join(this.dir, 'primary'), `${primaryDir}\n`);
    await Promise.all(this.sentinels.map((sentinel) => sentinel.stop(signal, graceMs)));
    await Promise.all([this.primary.stop(signal, graceMs), this.replica.stop(signal, graceMs)]);
  }

  /**
   * The port of the primary as the first sentinel that answers names it; 0 when none answers
   * (all sentinels gone), and the record of the last start is then the best knowledge there is.
   */
  private async currentPrimaryPort(): Promise<number> {
    for (const port of this.sentinelPorts) {
      const address = await sentinelPrimaryAddress(port, this.masterName).catch(() => undefined);
      if (address !== undefined) return address.port;
    }
    return 0;
  }
}

/** `SENTINEL MASTER name` of the sentinel on `port`, as a field map. */
async function sentinelMasterView(port: number, name: string): Promise<Record<string, string>> {
  return withSentinel(port, async (sentinel) => {
    const reply = (await sentinel.call('SENTINEL', 'MASTER', name)) as string[];
    const fields: Record<string, string> = {};
    for (let index = 0; index + 1 < reply.length; index += 2) {
      fields[reply[index] ?? ''] = reply[index + 1] ?? '';
    }
    return fields;
  });
}

/** `SENTINEL GET-MASTER-ADDR-BY-NAME name` of the sentinel on `port`: where the primary is. */
export async function sentinelPrimaryAddress(
  port: number,
  name: string,
): Promise<{ host: string; port: number }> {
  return withSentinel(port, async (sentinel) => {
    const reply = (await sentinel.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name)) as
      [string, string] | null;
    if (reply === null) throw new Error(`the sentinel on port ${port} monitors no "${name}"`);
    return { host: reply[0], port: Number(reply[1]) };
  });
}

async function withSentinel<T>(port: number, use: (sentinel: Redis) => Promise<T>): Promise<T> {
  // One attempt, no reconnection: callers poll, or move on to the next sentinel.
  const sentinel = new Redis(port, '127.0.0.1', {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  // The failure reaches the caller through the rejected command; without a listener ioredis
  // would also print it as an unhandled error event.
  sentinel.on('error', () => undefined);
  try {
    await sentinel.connect();
    return await use(sentinel);
  } finally {
    sentinel.disconnect();
  }
}
