import { z } from 'zod';

/**
 * How a process reaches Redis: one of three modes, chosen by which variables are set.
 * - `single`: `REDIS_URL`, one server (or a managed endpoint that fails over behind one address);
 * - `sentinel`: `REDIS_SENTINELS` + `REDIS_SENTINEL_NAME`; ioredis asks the sentinels for the
 *   current primary and asks again after a failover;
 * - `cluster`: `REDIS_CLUSTER_NODES`, seed nodes of a Redis Cluster; ioredis discovers the rest
 *   and follows slot moves. Every key must then carry one hash tag (see {@link isHashTagged}).
 */
export type RedisTarget =
  | { mode: 'single'; url: string }
  | {
      mode: 'sentinel';
      sentinels: HostPort[];
      name: string;
      password: string | undefined;
      sentinelPassword: string | undefined;
    }
  | { mode: 'cluster'; nodes: HostPort[]; password: string | undefined };

export interface HostPort {
  host: string;
  port: number;
}

const redisUrlForm = 'expected a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379';
const nodeListForm = 'expected comma-separated host:port pairs, e.g. 10.0.0.1:26379,10.0.0.2:26379';
const hostPort = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/;

function parseHostPorts(value: string): HostPort[] {
  return value.split(',').map((item) => {
    const match = hostPort.exec(item.trim());
    if (match === null) throw new Error(`"${item}" is not host:port`);
    const [, host = '', port = ''] = match;
    return { host: host.replace(/^\[|\]$/g, ''), port: Number(port) };
  });
}

const nodeList = z.string().refine(
  (value) =>
    value.split(',').every((item) => {
      const port = Number(hostPort.exec(item.trim())?.[2] ?? 0);
      return port >= 1 && port <= 65535;
    }),
  nodeListForm,
);

/** The variables that choose and configure the Redis mode; shared by every process. */
export const redisShape = {
  REDIS_URL: z
    .string({ error: redisUrlForm })
    .regex(/^rediss?:\/\/.+/, redisUrlForm)
    .optional(),
  /** Sentinels to ask for the primary, `host:port,…`; needs `REDIS_SENTINEL_NAME`. */
  REDIS_SENTINELS: nodeList.optional(),
  /** The primary's name in the sentinels' configuration (`sentinel monitor NAME …`). */
  REDIS_SENTINEL_NAME: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,128}$/, 'expected a sentinel master name (letters, digits, . _ -)')
    .optional(),
  /** Password of the Redis servers in sentinel and cluster modes (in the URL otherwise). */
  REDIS_PASSWORD: z.string().optional(),
  /** Password of the sentinels themselves, when they have one (`requirepass` in sentinel.conf). */
  REDIS_SENTINEL_PASSWORD: z.string().optional(),
  /** Seed nodes of a Redis Cluster, `host:port,…`; the others are discovered. */
  REDIS_CLUSTER_NODES: nodeList.optional(),
};

type RedisEnv = {
  [Name in keyof typeof redisShape]?: string | undefined;
} & { QUEUE_PREFIX?: string | undefined };

/**
 * True when every key `prefix:…` hashes to one Redis Cluster slot: the prefix holds a hash tag,
 * a non-empty `{…}` starting at its first `{`. Cluster runs a Lua script or MULTI only on keys
 * of one slot, and BullMQ's scripts and this project's (the prefix cache, stream ends, batch
 * transitions) each touch several keys of a queue.
 */
export function isHashTagged(prefix: string): boolean {
  return /^[^{]*\{[^}]+\}/.test(prefix);
}

interface IssueSink {
  addIssue(issue: { code: 'custom'; path: string[]; message: string }): void;
}

const MODE_VARIABLES = ['REDIS_URL', 'REDIS_SENTINELS', 'REDIS_CLUSTER_NODES'] as const;

/**
 * Exactly one mode (at most one when `optional`, for the launcher, which then starts its own
 * Redis); the sentinel mode's name; a hash-tagged prefix in cluster mode. Each problem names the
 * variable to change.
 */
export function checkRedisMode(env: RedisEnv, ctx: IssueSink, optional = false): void {
  const chosen = MODE_VARIABLES.filter((name) => env[name] !== undefined);
  if (chosen.length === 0 && !optional) {
    ctx.addIssue({
      code: 'custom',
      path: ['REDIS_URL'],
      message:
        `${redisUrlForm}; or REDIS_SENTINELS with REDIS_SENTINEL_NAME (Sentinel), or ` +
        'REDIS_CLUSTER_NODES (Redis Cluster)',
    });
  }
  if (chosen.length > 1) {
    ctx.addIssue({
      code: 'custom',
      path: [chosen[1] ?? 'REDIS_URL'],
      message: `set only one of ${MODE_VARIABLES.join(', ')}; ${chosen.join(' and ')} are set`,
    });
  }
  if (env.REDIS_SENTINELS !== undefined && env.REDIS_SENTINEL_NAME === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['REDIS_SENTINEL_NAME'],
      message: 'REDIS_SENTINELS needs the name of the primary the sentinels monitor',
    });
  }
  // A variable of another mode would be silently ignored.
  const strays: [keyof RedisEnv, string][] = [
    ['REDIS_SENTINEL_NAME', 'REDIS_SENTINELS'],
    ['REDIS_SENTINEL_PASSWORD', 'REDIS_SENTINELS'],
    [
      'REDIS_PASSWORD',
      'REDIS_SENTINELS or REDIS_CLUSTER_NODES (with REDIS_URL, the password goes in the URL)',
    ],
  ];
  for (const [name, needs] of strays) {
    const modeSet =
      name === 'REDIS_PASSWORD'
        ? env.REDIS_SENTINELS !== undefined || env.REDIS_CLUSTER_NODES !== undefined
        : env.REDIS_SENTINELS !== undefined;
    if (env[name] !== undefined && !modeSet) {
      ctx.addIssue({ code: 'custom', path: [name], message: `only used with ${needs}` });
    }
  }
  if (
    env.REDIS_CLUSTER_NODES !== undefined &&
    env.QUEUE_PREFIX !== undefined &&
    !isHashTagged(env.QUEUE_PREFIX)
  ) {
    ctx.addIssue({
      code: 'custom',
      path: ['QUEUE_PREFIX'],
      message:
        'Redis Cluster needs a hash-tagged prefix such as {dijiang}: every key must hash to ' +
        "one slot, since BullMQ's Lua scripts and the cluster's own touch several keys at once",
    });
  }
}

/** The mode an environment that passed {@link checkRedisMode} describes; undefined when none. */
export function redisTargetOf(env: RedisEnv): RedisTarget | undefined {
  if (env.REDIS_SENTINELS !== undefined) {
    return {
      mode: 'sentinel',
      sentinels: parseHostPorts(env.REDIS_SENTINELS),
      name: env.REDIS_SENTINEL_NAME ?? '',
      password: env.REDIS_PASSWORD,
      sentinelPassword: env.REDIS_SENTINEL_PASSWORD,
    };
  }
  if (env.REDIS_CLUSTER_NODES !== undefined) {
    return {
      mode: 'cluster',
      nodes: parseHostPorts(env.REDIS_CLUSTER_NODES),
      password: env.REDIS_PASSWORD,
    };
  }
  return env.REDIS_URL === undefined ? undefined : { mode: 'single', url: env.REDIS_URL };
}

/** {@link redisTargetOf} for an app's validated environment, where a mode is required. */
export function requireRedisTarget(env: RedisEnv): RedisTarget {
  const target = redisTargetOf(env);
  if (target === undefined) throw new Error('no Redis mode configured (REDIS_URL, …)');
  return target;
}
