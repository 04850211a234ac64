import type { Redis } from 'ioredis';
import { gatewayKeys, redisKeys, type GatewayKeys, type RedisKeys } from '#contracts';
import type { GatewayEnv } from '#config';
import { createRedis, connectRedisOrFail, type Logger } from '#cluster';
import type { ApiKeys } from './auth/api-keys.js';
import { BatchesService } from './batches/batches.service.js';
import { ChatPrompts } from './completions/chat-template.js';
import { CompletionsService } from './completions/completions.service.js';
import { FileStore } from './files/file-store.js';
import { JobQueues } from './jobs/job-queues.js';
import { JobsService } from './jobs/jobs.service.js';
import { RateLimiter } from './limits/rate-limiter.js';
import { GatewayMetrics } from './metrics/gateway-metrics.js';
import { ModelsService } from './models/models.service.js';
import { StateStore } from './states/state-store.js';
import { BlockingReaders } from './streams/job-stream-reader.js';

/** Everything the gateway's routes use, built once at boot (explicit wiring, no reflection). */
export interface GatewayServices {
  env: GatewayEnv;
  logger: Logger;
  keys: RedisKeys;
  gateway: GatewayKeys;
  apiKeys: ApiKeys;
  /** Fail-fast client: request-path reads and writes fail at once while Redis is down. */
  redis: Redis;
  /** BullMQ's client: its commands wait for a reconnection. */
  queueRedis: Redis;
  readers: BlockingReaders;
  limiter: RateLimiter;
  models: ModelsService;
  jobs: JobQueues;
  states: StateStore;
  files: FileStore;
  metrics: GatewayMetrics;
  completions: CompletionsService;
  jobsApi: JobsService;
  batches: BatchesService;
  close(): Promise<void>;
}

export async function createServices(
  env: GatewayEnv,
  logger: Logger,
  apiKeys: ApiKeys,
  redis: Redis,
): Promise<GatewayServices> {
  const keys = redisKeys(env.QUEUE_PREFIX);
  const gateway = gatewayKeys(env.QUEUE_PREFIX);
  const queueRedis = createRedis(env.REDIS_URL, 'queue', 'dijiang:gateway:queue', logger);
  await connectRedisOrFail(queueRedis, env.REDIS_URL);
  let readerCount = 0;
  const readers = new BlockingReaders(async () => {
    readerCount += 1;
    const reader = createRedis(
      env.REDIS_URL,
      'commands',
      `dijiang:gateway:reader-${readerCount}`,
      logger,
    );
    try {
      await reader.connect();
    } catch (error) {
      // Otherwise the client would keep reconnecting forever, one per failed request.
      reader.disconnect();
      throw error;
    }
    return reader;
  });
  const limiter = new RateLimiter(redis, gateway, env.RATE_LIMIT_RPM, env.RATE_LIMIT_TPM);
  const models = new ModelsService(redis, keys, gateway, env.MODEL_MEMORY_MS, env.WORKER_WAIT_MS);
  const chatPrompts = new ChatPrompts(redis, keys);
  const jobs = new JobQueues(queueRedis, redis, keys, gateway, env.MAX_QUEUE_DEPTH);
  const states = new StateStore(redis, keys);
  const files = new FileStore(redis, gateway);
  const batches = new BatchesService({
    redis,
    connection: queueRedis,
    keys,
    gateway,
    files,
    jobs,
    models,
    chatPrompts,
    states,
    env,
    logger,
  });
  const metrics = new GatewayMetrics({
    queues: () => [...jobs.known().values(), batches.queue],
    liveWorkers: () => models.liveWorkers(),
    redis,
    keys,
  });
  const completions = new CompletionsService({
    jobs,
    models,
    chatPrompts,
    states,
    readers,
    redis,
    keys,
    gateway,
    metrics,
    logger,
  });
  const jobsApi = new JobsService(jobs, models, states, readers, redis, keys);
  batches.start();
  return {
    env,
    logger,
    keys,
    gateway,
    apiKeys,
    redis,
    queueRedis,
    readers,
    limiter,
    models,
    jobs,
    states,
    files,
    metrics,
    completions,
    jobsApi,
    batches,
    async close() {
      await batches.close();
      await jobs.onApplicationShutdown();
      readers.close();
      await queueRedis.quit();
    },
  };
}
