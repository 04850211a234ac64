import { hostname } from 'node:os';
import { redisKeys } from '#contracts';
import { loadConfig, workerEnvSchema } from '#config';
import {
  bootOrExit,
  connectRedisOrFail,
  createLogger,
  createRedis,
  onShutdown,
  ReadyMessage,
  WorkerRegistry,
} from '#cluster';

bootOrExit(async () => {
  const env = loadConfig(workerEnvSchema);
  const logger = createLogger('worker', env.LOG_LEVEL).child({ workerId: env.WORKER_ID });
  const redis = createRedis(env.REDIS_URL, 'probe', `dijiang:worker:${env.WORKER_ID}`);
  await connectRedisOrFail(redis, env.REDIS_URL);

  const registry = new WorkerRegistry(
    redis,
    redisKeys(env.QUEUE_PREFIX),
    {
      id: env.WORKER_ID,
      host: hostname(),
      pid: process.pid,
      models: [],
      capacity: env.WORKER_CAPACITY,
      startedAt: new Date().toISOString(),
    },
    env.WORKER_TTL_MS,
    logger,
  );
  await registry.start();
  logger.info({ capacity: env.WORKER_CAPACITY }, ReadyMessage.Worker);

  onShutdown(async (reason) => {
    logger.info({ reason }, 'worker stopping');
    await registry.stop();
    await redis.quit();
    logger.info('worker stopped');
  });
});
