import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BUNDLE_MANIFEST,
  convertCheckpoint,
  DEFAULT_MODEL_CHECKPOINT,
  DEFAULT_MODEL_ID,
} from '#model';
import { launcherEnvSchema, loadConfig, redisTargetOf } from '#config';
import { describeRedisTarget, isPrettyLogFormat, prettyLogLines } from '#cluster';
import {
  isLogMessage,
  isPortInUse,
  ReadyMessage,
  spawnService,
  withEngineMallocTuning,
  type ServiceProcess,
} from '#processes';
import { startManagedRedis, type ManagedRedis } from './managed-redis.js';

export interface UpOptions {
  /** `--redis-sentinel`: the managed Redis is a Sentinel set (as `MANAGED_REDIS=sentinel`). */
  redisSentinel?: boolean;
}

/**
 * `dijiang up` (what `npm start` runs): the whole cluster on one machine. Children run in their
 * own process group so that Ctrl-C reaches only this launcher, which then stops them in order —
 * workers first (they hand their work back), then the gateway, then the managed Redis — instead
 * of everything dying at once. Node children also exit if this launcher dies (IPC channel).
 */
export async function runUp(options: UpOptions = {}): Promise<void> {
  const env = loadConfig(
    launcherEnvSchema,
    options.redisSentinel === true ? { ...process.env, MANAGED_REDIS: 'sentinel' } : process.env,
  );
  const displayHost = env.HOST.includes(':') ? `[${env.HOST}]` : env.HOST;
  const url = `http://${displayHost}:${env.PORT}`;
  if (await isPortInUse(env.PORT, env.HOST)) {
    throw new Error(
      `${env.HOST}:${env.PORT} is already in use: is another \`npm start\` running? Stop it, or ` +
        'choose another port with PORT=…',
    );
  }

  const { modelDir, modelId } = await ensureDefaultModel(env.MODEL_DIR);
  // Keys given by the operator are passed through; otherwise a local one is made for this run.
  const configuredKeys =
    process.env.API_KEYS !== undefined && process.env.API_KEYS !== ''
      ? process.env.API_KEYS
      : undefined;
  const usesOwnKeys = configuredKeys !== undefined || (process.env.API_KEYS_FILE ?? '') !== '';
  const localKey = usesOwnKeys ? undefined : `sk-local-${randomBytes(16).toString('hex')}`;
  const services: ServiceProcess[] = [];
  let managedRedis: ManagedRedis | undefined;
  let stopping = false;
  const stopAll = async (): Promise<void> => {
    stopping = true;
    const byRole = (role: string) => services.filter((service) => service.name.startsWith(role));
    await Promise.all(byRole('worker').map((service) => service.stop('SIGTERM', 15_000)));
    await Promise.all(byRole('gateway').map((service) => service.stop('SIGTERM', 10_000)));
    await managedRedis?.stop();
  };
  // Children always log JSON to this launcher (their readiness is a JSON line); on a terminal,
  // or with LOG_FORMAT=pretty, the launcher shows them as human lines.
  const readable = isPrettyLogFormat(env.LOG_FORMAT, process.stdout)
    ? prettyLogLines(process.stdout.isTTY)
    : undefined;
  const forward = (line: string, stream: 'stdout' | 'stderr'): void => {
    const shown = readable === undefined ? line : readable(line);
    (stream === 'stdout' ? process.stdout : process.stderr).write(`${shown}\n`);
  };

  let redisDescription: string;
  try {
    // REDIS_URL, or the sentinel or cluster variables, reach every child through its environment.
    const givenRedis = redisTargetOf(env);
    if (givenRedis === undefined) {
      managedRedis = await startManagedRedis(env.MANAGED_REDIS, env.DATA_DIR, log);
      redisDescription = managedRedis.description;
    } else {
      redisDescription = describeRedisTarget(givenRedis);
    }
    const childEnv = {
      ...process.env,
      ...managedRedis?.env,
      LOG_LEVEL: env.LOG_LEVEL,
      LOG_FORMAT: 'json',
      MODEL_DIR: modelDir,
    };
    const entry = (app: string) => new URL(`../../${app}/src/main.js`, import.meta.url).pathname;

    services.push(
      await spawnService('gateway', process.execPath, [entry('gateway')], {
        env: {
          ...childEnv,
          PORT: String(env.PORT),
          HOST: env.HOST,
          ...(localKey === undefined ? {} : { API_KEYS: `local:${localKey}` }),
        },
        isReady: (line) => isLogMessage(line, ReadyMessage.Gateway),
        onLine: forward,
        ipc: true,
        detached: true,
      }),
    );
    const workers = await Promise.all(
      Array.from({ length: env.WORKERS }, (_unused, index) =>
        spawnService(`worker-${index + 1}`, process.execPath, [entry('worker')], {
          env: withEngineMallocTuning(childEnv),
          isReady: (line) => isLogMessage(line, ReadyMessage.Worker),
          onLine: forward,
          ipc: true,
          detached: true,
        }),
      ),
    );
    services.push(...workers);
  } catch (error) {
    await stopAll();
    throw error;
  }

  const redisServices = managedRedis?.services ?? [];
  const survivesRedisLoss = managedRedis?.survivesOneLoss ?? false;
  for (const service of [...services, ...redisServices]) {
    void service.exited.then((exit) => {
      if (stopping) return;
      log(`${service.name} (pid ${service.pid}) exited unexpectedly: ${describeExit(exit)}`);
      const redisPart = redisServices.includes(service);
      if (!service.name.startsWith('worker') && !(redisPart && survivesRedisLoss)) {
        // Without the gateway or Redis the cluster is useless: stop the rest and fail.
        void stopAll().then(() => process.exit(1));
      }
    });
  }

  log(
    `cluster up: gateway ${url}, ${env.WORKERS} worker(s), Redis ${redisDescription}. ` +
      'Ctrl-C stops everything.',
  );
  process.stdout.write(banner(url, localKey, modelId, redisDescription));

  await new Promise<void>((resolveStopped) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      log(`${signal}: stopping workers, gateway and Redis`);
      void stopAll().then(resolveStopped);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
  log('all stopped');
}

/**
 * MODEL_DIR as given when it holds a bundle; otherwise the committed default checkpoint is
 * converted into MODEL_DIR/<id> (the same bundle on every machine).
 */
async function ensureDefaultModel(
  modelDir: string,
): Promise<{ modelDir: string; modelId: string }> {
  const root = resolve(modelDir);
  const bundles = existsSync(join(root, BUNDLE_MANIFEST))
    ? [root]
    : existsSync(root)
      ? readdirSync(root)
          .map((name) => join(root, name))
          .filter((dir) => existsSync(join(dir, BUNDLE_MANIFEST)))
      : [];
  const first = bundles.sort()[0];
  if (first !== undefined) {
    const manifest = JSON.parse(await readFile(join(first, BUNDLE_MANIFEST), 'utf8')) as {
      id: string;
    };
    return { modelDir: root, modelId: manifest.id };
  }
  const dir = join(root, DEFAULT_MODEL_ID);
  // From dist/apps/cli/src/ to the project root.
  const checkpoint = fileURLToPath(
    new URL(`../../../../${DEFAULT_MODEL_CHECKPOINT}`, import.meta.url),
  );
  log(
    `no model in ${modelDir}: converting the default model ${DEFAULT_MODEL_CHECKPOINT} into ${dir}`,
  );
  const { manifest } = await convertCheckpoint(checkpoint, dir, { id: DEFAULT_MODEL_ID });
  log(`built model ${manifest.id} (${manifest.parameterCount} parameters)`);
  return { modelDir: root, modelId: manifest.id };
}

/**
 * What a person needs once the cluster is up, between the log lines: where it answers, the key,
 * the model and a request to paste. The same text whatever the log format, so that scripts and
 * people read the same figures.
 */
function banner(
  url: string,
  localKey: string | undefined,
  modelId: string,
  redisDescription: string,
): string {
  const key = localKey ?? '<one of your API_KEYS>';
  const rows: [string, string][] = [
    ['URL', `${url}/v1 (OpenAI API; reference at ${url}/docs)`],
    ['console', `${url}/`],
    [
      'API key',
      localKey === undefined
        ? 'one of your API_KEYS'
        : `${localKey} (for this run: API_KEYS is unset)`,
    ],
    ['model', modelId],
    ['redis', redisDescription],
    [
      'try',
      `curl ${url}/v1/completions -H "Authorization: Bearer ${key}" ` +
        `-H "Content-Type: application/json" -d '${JSON.stringify(exampleRequest(modelId))}'`,
    ],
    ['health', `curl ${url}/health/ready`],
  ];
  return ['', ...rows.map(([label, value]) => `  ${label.padEnd(8)} ${value}`), '', ''].join('\n');
}

/** The request `dijiang up` prints (and the README shows): a greedy continuation of "It was". */
function exampleRequest(model: string): object {
  return { model, prompt: 'It was', max_tokens: 48, temperature: 0 };
}

function log(message: string): void {
  process.stdout.write(`[dijiang up] ${message}\n`);
}

function describeExit(exit: { code: number | null; signal: NodeJS.Signals | null }): string {
  return exit.signal !== null ? `signal ${exit.signal}` : `code ${String(exit.code)}`;
}
