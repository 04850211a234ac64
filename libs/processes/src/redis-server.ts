import { accessSync, constants, mkdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { spawnService, type ServiceProcess } from './service-process.js';

/**
 * A redis-server process owned by this process: the managed Redis of `dijiang up` and the private
 * Redis of each test run. Debian installs the binary under /usr/bin; /usr/sbin and /usr/local/bin
 * are searched too for other layouts.
 */
export function findRedisServer(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/bin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = join(dir, 'redis-server');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

export const REDIS_SERVER_MISSING =
  'redis-server was not found on PATH. Install it (Debian/Ubuntu: `sudo apt-get install -y ' +
  'redis-server`; macOS: `brew install redis`) or set REDIS_URL to a running Redis.';

export interface RedisServerOptions {
  port: number;
  /** Working directory for its data (AOF files). Created if missing. */
  dir: string;
  /** Persist every write to an append-only file, as production Redis should. */
  appendOnly: boolean;
  /** Own process group, so a terminal's Ctrl-C reaches only the launcher that owns it. */
  detached?: boolean;
  /** More `--name value` settings (a replica's `--replicaof`, cluster mode). */
  extraArgs?: readonly string[];
  /** The log text that means ready. @defaultValue `Ready to accept connections` */
  readyText?: string;
}

export interface RedisServer extends ServiceProcess {
  readonly url: string;
  readonly port: number;
}

export async function startRedisServer(options: RedisServerOptions): Promise<RedisServer> {
  const binary = findRedisServer();
  if (binary === undefined) throw new Error(REDIS_SERVER_MISSING);
  mkdirSync(options.dir, { recursive: true });
  const args = [
    '--port',
    String(options.port),
    '--bind',
    '127.0.0.1',
    '--dir',
    options.dir,
    '--save',
    '',
    '--appendonly',
    options.appendOnly ? 'yes' : 'no',
    // BullMQ loses jobs if Redis evicts keys under memory pressure.
    '--maxmemory-policy',
    'noeviction',
    '--daemonize',
    'no',
    ...(options.extraArgs ?? []),
  ];
  const readyText = options.readyText ?? 'Ready to accept connections';
  const service = await spawnService(`redis-server :${options.port}`, binary, args, {
    env: process.env,
    isReady: (line) => line.includes(readyText),
    readyTimeoutMs: 15_000,
    detached: options.detached ?? false,
  });
  return { ...service, url: `redis://127.0.0.1:${options.port}`, port: options.port };
}
