import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isLogMessage, ReadyMessage, spawnService, type ServiceProcess } from '#processes';
import { testModelDir } from './model.js';

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

/** Starts a gateway process on a free port against `redisUrl`. */
export async function startGateway(
  redisUrl: string,
  env: Record<string, string> = {},
): Promise<TestGateway> {
  const service = await spawnService('gateway', process.execPath, [appEntry('gateway')], {
    env: { ...process.env, LOG_LEVEL: 'info', ...env, REDIS_URL: redisUrl, PORT: '0' },
    isReady: (line) => isLogMessage(line, ReadyMessage.Gateway),
    onLine: forwardWhenDebugging('gateway'),
  });
  const { url } = JSON.parse(service.readyLine) as { url: string };
  return { url, service };
}

/**
 * Starts a worker process against `redisUrl` serving the test model (unless `MODEL_DIR` is
 * given); resolves once it has loaded its models and registered.
 */
export async function startWorker(
  redisUrl: string,
  env: Record<string, string> = {},
): Promise<ServiceProcess> {
  return spawnService('worker', process.execPath, [appEntry('worker')], {
    env: {
      ...process.env,
      LOG_LEVEL: 'info',
      MODEL_DIR: testModelDir(),
      ENGINE_THREADS: '1',
      ...env,
      REDIS_URL: redisUrl,
    },
    isReady: (line) => isLogMessage(line, ReadyMessage.Worker),
    onLine: forwardWhenDebugging(env.WORKER_ID ?? 'worker'),
  });
}
