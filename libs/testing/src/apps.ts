import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isLogMessage, ReadyMessage, spawnService, type ServiceProcess } from '#processes';
import { testModelDir } from './model.js';
import type { RedisEndpoint } from './redis-ha.js';

/**
 * The Redis variables of a child: a URL (single server) or an endpoint's own variables. The
 * other modes' variables are cleared (empty counts as unset), so one set in the test's own
 * environment cannot add a second mode.
 */
function redisEnv(redis: string | RedisEndpoint): Record<string, string> {
  const cleared = Object.fromEntries(
    [
      'REDIS_URL',
      'REDIS_SENTINELS',
      'REDIS_SENTINEL_NAME',
      'REDIS_PASSWORD',
      'REDIS_SENTINEL_PASSWORD',
      'REDIS_CLUSTER_NODES',
    ].map((name) => [name, '']),
  );
  return { ...cleared, ...(typeof redis === 'string' ? { REDIS_URL: redis } : redis.env) };
}

/** The built entry point of an app; child processes always run the compiled dist/. */
export function appEntry(app: 'gateway' | 'worker' | 'cli'): string {
  return fileURLToPath(new URL(`../../../dist/apps/${app}/src/main.js`, import.meta.url));
}

export function assertAppsBuilt(): void {
  for (const app of ['gateway', 'worker', 'cli'] as const) {
    if (!existsSync(appEntry(app))) {
      throw new Error(`${appEntry(app)} is missing: run \`npm run build\` first (npm test does).`);
    }
  }
}

/** Shows child output when a test run sets DEBUG_CHILDREN=1. */
function forwardWhenDebugging(name: string) {
  return (line: string): void => {
    if (process.env.DEBUG_CHILDREN === '1') process.stderr.write(`[${name}] ${line}\n`);
  };
}

export interface TestGateway {
  readonly url: string;
  readonly service: ServiceProcess;
}

/** Starts a gateway process on a free port against `redis` (a URL or an endpoint). */
export async function startGateway(
  redis: string | RedisEndpoint,
  env: Record<string, string> = {},
): Promise<TestGateway> {
  const service = await spawnService('gateway', process.execPath, [appEntry('gateway')], {
    env: { ...process.env, LOG_LEVEL: 'info', ...env, ...redisEnv(redis), PORT: '0' },
    isReady: (line) => isLogMessage(line, ReadyMessage.Gateway),
    onLine: forwardWhenDebugging('gateway'),
  });
  const { url } = JSON.parse(service.readyLine) as { url: string };
  return { url, service };
}

/**
 * Starts a worker process against `redis` (a URL or an endpoint) serving the test model (unless `MODEL_DIR` is
 * given); resolves once it has loaded its models and registered.
 */
export async function startWorker(
  redis: string | RedisEndpoint,
  env: Record<string, string> = {},
): Promise<ServiceProcess> {
  return spawnService('worker', process.execPath, [appEntry('worker')], {
    env: {
      ...process.env,
      LOG_LEVEL: 'info',
      MODEL_DIR: testModelDir(),
      ENGINE_THREADS: '1',
      ...env,
      ...redisEnv(redis),
    },
    isReady: (line) => isLogMessage(line, ReadyMessage.Worker),
    onLine: forwardWhenDebugging(env.WORKER_ID ?? 'worker'),
  });
}
