import { hostname } from 'node:os';
import { z } from 'zod';

const integer = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, `expected an integer between ${min} and ${max}`)
    .transform(Number)
    .pipe(
      z.number().int().min(min, `expected at least ${min}`).max(max, `expected at most ${max}`),
    );

const redisUrlForm = 'expected a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379';
const redisUrl = z.string({ error: redisUrlForm }).regex(/^rediss?:\/\/.+/, redisUrlForm);

const logLevel = z
  .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
    error: 'expected one of fatal, error, warn, info, debug, trace, silent',
  })
  .default('info');

/** Prefix of every Redis key the cluster writes, BullMQ's included. @defaultValue `dijiang` */
const queuePrefix = z
  .string()
  .regex(/^[A-Za-z0-9_{}-]{1,64}$/, 'expected 1-64 letters, digits, "_", "-", "{" or "}"')
  .default('dijiang');

/** Settings every process that talks to Redis shares. */
const clusterShape = {
  REDIS_URL: redisUrl,
  QUEUE_PREFIX: queuePrefix,
  LOG_LEVEL: logLevel,
  /**
   * A worker's registry entry expires this long after its last heartbeat, so a killed worker
   * disappears from `/health/ready` within this time. @defaultValue 5000 ms
   */
  WORKER_TTL_MS: integer(1000, 600_000).default(5000),
};

export const gatewayEnvSchema = z.object({
  ...clusterShape,
  /** @defaultValue 8080; 0 picks a free port (the log says which). */
  PORT: integer(0, 65535).default(8080),
  /** @defaultValue 127.0.0.1 (loopback only) */
  HOST: z.string().min(1).default('127.0.0.1'),
});
export type GatewayEnv = z.infer<typeof gatewayEnvSchema>;

export const workerEnvSchema = z.object({
  ...clusterShape,
  /** @defaultValue `<hostname>-<pid>`; must be unique in the cluster. */
  WORKER_ID: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,128}$/, 'expected 1-128 letters, digits, ".", "_" or "-"')
    .default(`${hostname()}-${process.pid}`),
  /** Maximum sequences the worker runs at once (BullMQ concurrency). @defaultValue 8 */
  WORKER_CAPACITY: integer(1, 4096).default(8),
  /** Folder of model bundles, one sub-folder per model. @defaultValue `models` */
  MODEL_DIR: z.string().min(1).default('models'),
});
export type WorkerEnv = z.infer<typeof workerEnvSchema>;

/** `dijiang up` / `npm start`: the local cluster on one machine. */
export const launcherEnvSchema = z.object({
  /** When unset, a managed redis-server is started with its data under `DATA_DIR`. */
  REDIS_URL: redisUrl.optional(),
  PORT: integer(1, 65535).default(8080),
  HOST: z.string().min(1).default('127.0.0.1'),
  /** Worker processes to start. @defaultValue 2 */
  WORKERS: integer(0, 256).default(2),
  /** Where the managed Redis keeps its data. @defaultValue `.data` */
  DATA_DIR: z.string().min(1).default('.data'),
  LOG_LEVEL: logLevel,
});
export type LauncherEnv = z.infer<typeof launcherEnvSchema>;
