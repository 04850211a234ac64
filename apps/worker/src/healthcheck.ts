/**
 * The worker images' HEALTHCHECK (`node dist/apps/worker/src/healthcheck.js`, see
 * deploy/worker.Dockerfile). The worker has no HTTP port, and the process itself needs no check:
 * tini exits when the worker exits and the restart policy replaces the container. What a check
 * adds is "registered and heartbeating": exit 0 while a worker of this host (the container's
 * hostname) is live in the Redis worker registry, the list `/health/ready` shows; exit 1 when none
 * is (not yet, or no longer), when Redis cannot be reached, or when the environment is invalid.
 *
 * The Redis variables and QUEUE_PREFIX are read with the worker's own schema, so the defaults are the
 * worker's. A Redis that accepts the connection but never answers is left to Docker's check
 * timeout, which counts as a failure.
 */
import { hostname } from 'node:os';
import { createLogger, createRedis, listLiveWorkers } from '#cluster';
import { loadConfig, requireRedisTarget, workerEnvSchema } from '#config';
import { redisKeys } from '#contracts';

async function isThisHostsWorkerLive(): Promise<boolean> {
  const env = loadConfig(workerEnvSchema);
  // One attempt and no reconnection or queued commands: a failed check simply fails, and Docker
  // runs the next one at its interval.
  const redis = createRedis(
    requireRedisTarget(env),
    'probe',
    'dijiang:worker:healthcheck',
    // The failed connect rejects below and is reported once, on stderr.
    createLogger('worker-healthcheck', 'silent'),
  );
  try {
    await redis.connect();
    const live = await listLiveWorkers(redis, redisKeys(env.QUEUE_PREFIX));
    return live.some((worker) => worker.host === hostname());
  } finally {
    redis.disconnect();
  }
}

try {
  const live = await isThisHostsWorkerLive();
  // Docker keeps the check's output (`docker inspect`): say why it failed.
  if (!live) process.stderr.write(`no live worker of host ${hostname()} in the registry\n`);
  process.exitCode = live ? 0 : 1;
} catch (error) {
  const reason = error instanceof Error ? error.message : String(error);
  process.stderr.write(`worker healthcheck failed: ${reason}\n`);
  process.exitCode = 1;
}
