import { hostname } from 'node:os';
import { Worker } from 'bullmq';
import { modelQueueName, redisKeys } from '#contracts';
import { loadConfig, requireRedisTarget, workerEnvSchema } from '#config';
import {
  CheckpointStore,
  connectRedisOrFail,
  createLogger,
  createRedis,
  onServingConnectionLost,
  PrefixCache,
  publishModelChat,
  type RedisClient,
  subscribeToCancellations,
  WorkerRegistry,
  workerOptions,
} from '#cluster';
import {
  bootOrExit,
  ENGINE_MALLOC_ENV,
  missingEngineMallocTuning,
  onShutdown,
  ReadyMessage,
} from '#processes';
import { Engine } from '#engine';
import { JobRegistry } from './job-registry.js';
import type { ModelRuntime } from './job-context.js';
import { discoverBundles } from './models.js';
import { listeningPort, WorkerMetrics } from './worker-metrics.js';

bootOrExit(async () => {
  const env = loadConfig(workerEnvSchema);
  const logger = createLogger('worker', env.LOG_LEVEL, env.LOG_FORMAT).child({
    workerId: env.WORKER_ID,
  });
  const untuned = missingEngineMallocTuning();
  if (untuned.length > 0) {
    logger.warn(
      { missing: untuned, recommended: ENGINE_MALLOC_ENV },
      'glibc malloc is not tuned for the engine: large batches decode up to twice as slow ' +
        '(dijiang up and the worker images set these variables)',
    );
  }
  const keys = redisKeys(env.QUEUE_PREFIX);
  const target = requireRedisTarget(env);
  const probe = createRedis(target, 'commands', `dijiang:worker:${env.WORKER_ID}`, logger);
  await connectRedisOrFail(probe, target);
  const redis = createRedis(target, 'queue', `dijiang:worker:${env.WORKER_ID}:data`, logger);
  const subscriber = createRedis(target, 'queue', `dijiang:worker:${env.WORKER_ID}:cancel`, logger);

  // One engine thread per model, loaded (and checksummed) before the worker takes any job.
  const runtimes = new Map<string, ModelRuntime>();
  for (const bundleDir of discoverBundles(env.MODEL_DIR)) {
    const engine = await Engine.start({
      bundleDir,
      device: env.ENGINE_DEVICE,
      maxBatch: env.ENGINE_MAX_BATCH,
      maxPrefillChunk: env.ENGINE_PREFILL_CHUNK,
      ...(env.ENGINE_THREADS === undefined ? {} : { intraOpThreads: env.ENGINE_THREADS }),
    });
    // A worker whose engine died would take jobs only to fail them: exit, so that a supervisor
    // restarts it and its jobs move to other workers.
    engine.onFatal((error) => {
      logger.fatal({ err: error, model: engine.modelId }, 'engine thread failed; exiting');
      process.exit(1);
    });
    if (runtimes.has(engine.modelId)) {
      throw new Error(`two bundles in MODEL_DIR have the model id ${engine.modelId}`);
    }
    runtimes.set(engine.modelId, {
      engine,
      prefixCache: new PrefixCache(
        redis,
        keys,
        engine.modelId,
        env.PREFIX_CACHE_MAX_BYTES,
        engine.stateBytes,
      ),
    });
    logger.info(
      { model: engine.modelId, bundleDir, stateBytes: engine.stateBytes },
      'model loaded',
    );
  }

  // Gateways render chat requests with the template of the bundle; it must be in Redis before
  // this worker takes (and registers for) the model's jobs.
  for (const [modelId, { engine }] of runtimes) {
    await publishModelChat(probe, keys, modelId, engine.chat ?? { template: null });
  }

  const identity = { id: env.WORKER_ID, host: hostname(), pid: process.pid };
  const jobs = new JobRegistry(
    redis,
    keys,
    new CheckpointStore(redis, keys),
    {
      checkpointEveryTokens: env.CHECKPOINT_EVERY_TOKENS,
      checkpointEveryMs: env.CHECKPOINT_EVERY_MS,
      checkpointPrefillEveryTokens: env.CHECKPOINT_PREFILL_EVERY_TOKENS,
      prefixBlockTokens: env.PREFIX_BLOCK_TOKENS,
    },
    identity,
    logger,
  );
  // Redis may lose writes it acknowledged before a drop: see haltAfterConnectionLoss.
  // Not at shutdown: quitting the connection closes it too, and is no loss.
  let stopping = false;
  onServingConnectionLost(redis, keys.workerIndex, () => {
    if (!stopping) jobs.haltAfterConnectionLoss();
  });
  await subscribeToCancellations(subscriber, keys, (jobId) => {
    jobs.cancel(jobId);
  });

  // BullMQ closes only the connections it creates itself: these are quit at shutdown.
  const queueConnections: RedisClient[] = [];
  const workers = [...runtimes].map(([modelId, runtime]) => {
    const connection = createRedis(
      target,
      'queue',
      `dijiang:worker:${env.WORKER_ID}:bullmq`,
      logger,
    );
    queueConnections.push(connection);
    const worker = new Worker(
      modelQueueName(modelId),
      async (job, lockToken) => jobs.process(job, lockToken, runtime),
      workerOptions(connection, env.QUEUE_PREFIX, env.WORKER_CAPACITY),
    );
    worker.on('failed', (job, error) => {
      logger.warn({ jobId: job?.id, model: modelId, err: error }, 'job failed');
    });
    worker.on('lockRenewalFailed', (jobIds) => {
      jobs
        .abandon(jobIds, (jobId) => worker.toKey(`${jobId}:lock`))
        .catch((error: unknown) => {
          logger.error({ err: error, jobIds }, 'could not check the locks BullMQ failed to renew');
        });
    });
    worker.on('error', (error) => {
      logger.error({ err: error, model: modelId }, 'queue error');
    });
    return worker;
  });

  const registry = new WorkerRegistry(
    probe,
    keys,
    {
      ...identity,
      models: [...runtimes.keys()],
      capacity: env.WORKER_CAPACITY,
      startedAt: new Date().toISOString(),
    },
    env.WORKER_TTL_MS,
    logger,
  );
  await registry.start();
  const metrics = new WorkerMetrics(
    env.WORKER_ID,
    new Map([...runtimes].map(([modelId, runtime]) => [modelId, runtime.engine])),
    env.WORKER_CAPACITY,
  );
  const metricsServer =
    env.METRICS_PORT === undefined
      ? undefined
      : await metrics.serve(env.METRICS_PORT, env.METRICS_HOST);
  if (metricsServer !== undefined) {
    const port = listeningPort(metricsServer);
    logger.info({ port, url: `http://${env.METRICS_HOST}:${port}/metrics` }, 'metrics served');
  }
  logger.info({ models: [...runtimes.keys()], capacity: env.WORKER_CAPACITY }, ReadyMessage.Worker);

  onShutdown(async (reason) => {
    logger.info({ reason, activeJobs: jobs.activeJobs }, 'worker stopping');
    // Take no new job, checkpoint every running sequence and hand its job back to the queue.
    await Promise.all(workers.map((worker) => worker.pause(true)));
    jobs.suspendAll();
    const deadline = Date.now() + env.SHUTDOWN_GRACE_MS;
    while (jobs.activeJobs > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (jobs.activeJobs > 0) {
      logger.warn({ activeJobs: jobs.activeJobs }, 'jobs still running at the deadline');
    }
    await Promise.all(workers.map((worker) => worker.close(true)));
    metricsServer?.close();
    await Promise.all([...runtimes.values()].map((runtime) => runtime.engine.close()));
    await registry.stop();
    stopping = true;
    await Promise.all(
      [redis, subscriber, probe, ...queueConnections].map((connection) => connection.quit()),
    );
    logger.info('worker stopped');
  });
});
