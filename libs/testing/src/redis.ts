import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Cluster } from 'ioredis';
import type { RedisClient } from '#cluster';
import type { RedisTarget } from '#config';
import {
  findRedisServer,
  freePort,
  REDIS_SERVER_MISSING,
  startRedisServer,
  type RedisServer,
} from '#processes';
import type { RedisEndpoint } from './redis-ha.js';

/**
 * Makes sure a redis-server binary exists before any test runs. Tests never use a shared Redis:
 * each run starts its own. On Debian/Ubuntu as root the binary is installed with apt; otherwise
 * the error says what to run.
 */
export function ensureRedisServerBinary(): string {
  const found = findRedisServer();
  if (found !== undefined) return found;
  const isRoot = process.getuid?.() === 0;
  if (isRoot && existsSync('/usr/bin/apt-get')) {
    process.stderr.write('redis-server not found: installing it with apt-get\n');
    for (const args of [['update'], ['install', '-y', '--no-install-recommends', 'redis-server']]) {
      const result = spawnSync('apt-get', args, {
        stdio: 'inherit',
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
      if (result.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed`);
    }
    const installed = findRedisServer();
    if (installed !== undefined) return installed;
  }
  throw new Error(`Tests need a redis-server binary. ${REDIS_SERVER_MISSING}`);
}

/** A private redis-server for tests: its own port and data dir, restartable on the same port. */
export class TestRedis implements RedisEndpoint {
  private constructor(
    private server: RedisServer,
    readonly dir: string,
    readonly appendOnly: boolean,
  ) {}

  static async start(options: { appendOnly?: boolean } = {}): Promise<TestRedis> {
    const dir = mkdtempSync(join(tmpdir(), 'dijiang-redis-'));
    const appendOnly = options.appendOnly ?? false;
    const server = await startRedisServer({ port: await freePort(), dir, appendOnly });
    return new TestRedis(server, dir, appendOnly);
  }

  get url(): string {
    return this.server.url;
  }

  get env(): Record<string, string> {
    return { REDIS_URL: this.server.url };
  }

  get target(): RedisTarget {
    return { mode: 'single', url: this.server.url };
  }

  get port(): number {
    return this.server.port;
  }

  get pid(): number {
    return this.server.pid;
  }

  /** Graceful shutdown (SIGTERM): Redis flushes its AOF first. */
  async stop(): Promise<void> {
    await this.server.stop('SIGTERM');
  }

  /** Starts again on the same port and data dir (after stop). */
  async restart(): Promise<void> {
    this.server = await startRedisServer({
      port: this.server.port,
      dir: this.dir,
      appendOnly: this.appendOnly,
    });
  }
}

/** A key prefix no other test uses, so tests sharing one Redis never see each other's keys. */
export function uniquePrefix(label: string): string {
  return `test-${label}-${randomBytes(4).toString('hex')}`;
}

/** {@link uniquePrefix} with a hash tag (`{test-label-…}`), as a Redis Cluster needs. */
export function uniqueTaggedPrefix(label: string): string {
  return `{${uniquePrefix(label)}}`;
}

/** Deletes every key under `prefix` (the registry's and BullMQ's alike), on every primary. */
export async function deletePrefix(redis: RedisClient, prefix: string): Promise<void> {
  const primaries = redis instanceof Cluster ? redis.nodes('master') : [redis];
  for (const node of primaries) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await node.del(...keys);
    } while (cursor !== '0');
  }
}
