import { hostname } from 'node:os';
import { z } from 'zod';
import { DEVICE_NAMES, ENGINE_DEFAULTS } from '#engine';
import { checkRedisMode, redisShape, redisTargetOf } from './redis-target.js';

const integer = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, `expected an integer between ${min} and ${max}`)
    .transform(Number)
    .pipe(
      z.number().int().min(min, `expected at least ${min}`).max(max, `expected at most ${max}`),
    );

const logLevel = z
  .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
    error: 'expected one of fatal, error, warn, info, debug, trace, silent',
  })
  .default('info');

export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/**
 * How logs are written: `json` (one JSON object per line, for collectors), `pretty` (human lines:
 * time, level, service, message, fields) or `auto`, pretty when stdout is a terminal.
 * @defaultValue `auto`
 */
const logFormat = z
  .enum(LOG_FORMATS, { error: `expected one of ${LOG_FORMATS.join(', ')}` })
  .default('auto');

/** Prefix of every Redis key the cluster writes, BullMQ's included. @defaultValue `dijiang` */
const queuePrefix = z
  .string()
  .regex(/^[A-Za-z0-9_{}-]{1,64}$/, 'expected 1-64 letters, digits, "_", "-", "{" or "}"')
  .default('dijiang');

/** Settings every process that talks to Redis shares. */
const clusterShape = {
  ...redisShape,
  QUEUE_PREFIX: queuePrefix,
  LOG_LEVEL: logLevel,
  LOG_FORMAT: logFormat,
  /**
   * A worker's registry entry expires this long after its last heartbeat, so a killed worker
   * disappears from `/health/ready` within this time. @defaultValue 5000 ms
   */
  WORKER_TTL_MS: integer(1000, 600_000).default(5000),
};

export const gatewayEnvSchema = z
  .object({
    ...clusterShape,
    /** @defaultValue 8080; 0 picks a free port (the log says which). */
    PORT: integer(0, 65535).default(8080),
    /** @defaultValue 127.0.0.1 (loopback only) */
    HOST: z.string().min(1).default('127.0.0.1'),
    /**
     * API keys, comma-separated; each `tenant:key` or a bare `key` (its tenant is then derived from
     * the key's hash). Tenants never see each other's jobs, files, batches, documents or states.
     */
    API_KEYS: z.string().optional(),
    /** Keys that may also open `/admin` (same form as `API_KEYS`). */
    ADMIN_API_KEYS: z.string().optional(),
    /** A JSON file `[{"key": "...", "tenant": "...", "admin": false}]`, read once at boot. */
    API_KEYS_FILE: z.string().min(1).optional(),
    /**
     * `true` serves every route without a key, as tenant `local`. Refused unless `HOST` is a
     * loopback address. @defaultValue false
     */
    AUTH_DISABLED: z
      .enum(['true', 'false'], { error: 'expected true or false' })
      .default('false')
      .transform((value) => value === 'true'),
    /** Requests per minute per tenant; 0 = unlimited. @defaultValue 600 */
    RATE_LIMIT_RPM: integer(0, 10_000_000).default(600),
    /**
     * Tokens per minute per tenant (prompt + output, or scored, or digested), charged by workers as
     * jobs complete; 0 = unlimited. @defaultValue 1000000
     */
    RATE_LIMIT_TPM: integer(0, 1_000_000_000).default(1_000_000),
    /** Jobs of one priority class waiting in a model's queue before new ones get 429. @defaultValue 1000 */
    MAX_QUEUE_DEPTH: integer(1, 10_000_000).default(1000),
    /** Largest JSON request body. @defaultValue 8 MiB */
    MAX_BODY_BYTES: integer(1024, 1 << 30).default(8 * 1024 * 1024),
    /** Largest document upload (`/v1/documents`), streamed to Redis. @defaultValue 64 MiB */
    MAX_DOCUMENT_BYTES: integer(1, 2 ** 31 - 1).default(64 * 1024 * 1024),
    /** Largest file upload (`/v1/files`). @defaultValue 100 MiB */
    MAX_FILE_BYTES: integer(1, 2 ** 31 - 1).default(100 * 1024 * 1024),
    /** Most request lines in one batch input file. @defaultValue 50000 */
    BATCH_MAX_LINES: integer(1, 10_000_000).default(50_000),
    /** A batch not finished this long after its creation expires. @defaultValue 86400 (24 h) */
    BATCH_EXPIRY_SECONDS: integer(1, 30 * 24 * 3600).default(24 * 3600),
    /**
     * How long a synchronous request for a known model waits for a live worker before 503.
     * @defaultValue 10000 ms
     */
    WORKER_WAIT_MS: integer(0, 600_000).default(10_000),
    /**
     * A model stays known (requests wait for a worker instead of 404) this long after the last
     * worker serving it was seen. @defaultValue 600000 ms (10 min)
     */
    MODEL_MEMORY_MS: integer(0, 30 * 24 * 3600 * 1000).default(600_000),
  })
  .superRefine((env, ctx) => {
    checkRedisMode(env, ctx);
  });
export type GatewayEnv = z.infer<typeof gatewayEnvSchema>;

export const workerEnvSchema = z
  .object({
    ...clusterShape,
    /** @defaultValue `<hostname>-<pid>`; must be unique in the cluster. */
    WORKER_ID: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,128}$/, 'expected 1-128 letters, digits, ".", "_" or "-"')
      .default(`${hostname()}-${process.pid}`),
    /** Maximum sequences the worker runs at once, per model (BullMQ concurrency). @defaultValue 8 */
    WORKER_CAPACITY: integer(1, 4096).default(8),
    /** A model bundle, or a folder of bundles (one sub-folder each). @defaultValue `models` */
    MODEL_DIR: z.string().min(1).default('models'),
    /**
     * Execution provider: `cpu` (fp32 graph) or `cuda` (fp16 graph).
     * @defaultValue `ENGINE_DEFAULTS.device` (libs/engine)
     */
    ENGINE_DEVICE: z
      .enum(DEVICE_NAMES, { error: `expected one of ${DEVICE_NAMES.join(', ')}` })
      .default(ENGINE_DEFAULTS.device),
    /** onnxruntime intra-op threads per model; unset lets onnxruntime choose. */
    ENGINE_THREADS: integer(1, 1024).optional(),
    /** Rows per decode step. @defaultValue `ENGINE_DEFAULTS.maxBatch` */
    ENGINE_MAX_BATCH: integer(1, 4096).default(ENGINE_DEFAULTS.maxBatch),
    /** Tokens per prefill chunk when nothing decodes. @defaultValue `ENGINE_DEFAULTS.maxPrefillChunk` */
    ENGINE_PREFILL_CHUNK: integer(ENGINE_DEFAULTS.minPrefillChunk, 65536).default(
      ENGINE_DEFAULTS.maxPrefillChunk,
    ),
    /**
     * Checkpoint a generating sequence after this many tokens…
     * @defaultValue `ENGINE_DEFAULTS.checkpoint.everyTokens`
     */
    CHECKPOINT_EVERY_TOKENS: integer(1, 1_000_000).default(ENGINE_DEFAULTS.checkpoint.everyTokens),
    /** …or this much time, whichever comes first. @defaultValue `ENGINE_DEFAULTS.checkpoint.everyMs` */
    CHECKPOINT_EVERY_MS: integer(100, 3_600_000).default(ENGINE_DEFAULTS.checkpoint.everyMs),
    /**
     * While prefilling, at the chunk boundary after this many tokens.
     * @defaultValue `ENGINE_DEFAULTS.checkpoint.prefillEveryTokens`
     */
    CHECKPOINT_PREFILL_EVERY_TOKENS: integer(1, 1e9).default(
      ENGINE_DEFAULTS.checkpoint.prefillEveryTokens,
    ),
    /** Bytes of prefix states kept in Redis for all workers, LRU-evicted. @defaultValue 256 MiB */
    PREFIX_CACHE_MAX_BYTES: integer(0, 1e12).default(256 * 1024 * 1024),
    /**
     * Prefix states are cached every this many prompt tokens; 0 disables.
     * @defaultValue `ENGINE_DEFAULTS.prefixBlockTokens`
     */
    PREFIX_BLOCK_TOKENS: integer(0, 1_000_000).default(ENGINE_DEFAULTS.prefixBlockTokens),
    /** On SIGTERM, time to checkpoint and hand back jobs before exiting. @defaultValue 10000 ms */
    SHUTDOWN_GRACE_MS: integer(0, 600_000).default(10_000),
    /**
     * Port of the worker's Prometheus metrics (`GET /metrics`: engine steps, batch size, tokens,
     * state bytes). Unset: no metrics server, as several workers on one host would need a port
     * each; the compose file sets 9464 (each container has its own address). 0 picks a free port.
     */
    METRICS_PORT: integer(0, 65535).optional(),
    /** Address the metrics server listens on. @defaultValue 127.0.0.1 (compose: 0.0.0.0) */
    METRICS_HOST: z.string().min(1).default('127.0.0.1'),
  })
  .superRefine((env, ctx) => {
    checkRedisMode(env, ctx);
  });

export const MANAGED_REDIS_SHAPES = ['single', 'sentinel'] as const;
export type ManagedRedisShape = (typeof MANAGED_REDIS_SHAPES)[number];

/** `dijiang up` / `npm start`: the local cluster on one machine. */
export const launcherEnvSchema = z
  .object({
    /**
     * With none of REDIS_URL, REDIS_SENTINELS, REDIS_CLUSTER_NODES set, a managed redis-server is
     * started with its data under `DATA_DIR`; otherwise they are passed on to every process.
     */
    ...redisShape,
    QUEUE_PREFIX: queuePrefix,
    PORT: integer(1, 65535).default(8080),
    HOST: z.string().min(1).default('127.0.0.1'),
    /** Worker processes to start. @defaultValue 2 */
    WORKERS: integer(0, 256).default(2),
    /** Model bundles for the workers; the default model is built here if none. @defaultValue models */
    MODEL_DIR: z.string().min(1).default('models'),
    /**
     * The shape of the managed Redis: `single`, one redis-server (data in `DATA_DIR/redis`), or
     * `sentinel`, a primary, a replica and three sentinels, with the processes in Sentinel mode
     * (data in `DATA_DIR/redis-sentinel`); `dijiang up --redis-sentinel` sets `sentinel`.
     * @defaultValue `single`
     */
    MANAGED_REDIS: z
      .enum(MANAGED_REDIS_SHAPES, { error: `expected one of ${MANAGED_REDIS_SHAPES.join(', ')}` })
      .default('single'),
    /** Where the managed Redis keeps its data. @defaultValue `.data` */
    DATA_DIR: z.string().min(1).default('.data'),
    LOG_LEVEL: logLevel,
    LOG_FORMAT: logFormat,
  })
  .superRefine((env, ctx) => {
    checkRedisMode(env, ctx, true);
    // Silently running against the given Redis instead would hide that no sentinel was started.
    if (env.MANAGED_REDIS === 'sentinel' && redisTargetOf(env) !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['MANAGED_REDIS'],
        message:
          'a managed Sentinel set is started only when none of REDIS_URL, REDIS_SENTINELS, ' +
          'REDIS_CLUSTER_NODES is set: unset them, or leave out MANAGED_REDIS / --redis-sentinel',
      });
    }
  });
