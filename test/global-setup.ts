import { rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { TestProject } from 'vitest/node';
import type { RedisTarget } from '#config';
import {
  assertAppsBuilt,
  buildTestModel,
  ensureRedisServerBinary,
  TestRedis,
  TestRedisCluster,
} from '#testing';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A private redis-server for this test run (tests that kill Redis start their own). */
    redisUrl: string;
    /** A private three-primary Redis Cluster: its processes' variables and a client target. */
    redisCluster: { env: Record<string, string>; target: RedisTarget };
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  assertAppsBuilt();
  ensureRedisServerBinary();
  const modelDir = await buildTestModel();
  const redis = await TestRedis.start();
  project.provide('redisUrl', redis.url);
  const cluster = await TestRedisCluster.start();
  project.provide('redisCluster', { env: cluster.env, target: cluster.target });
  return async () => {
    await cluster.stop();
    await redis.stop();
    await rm(dirname(modelDir), { recursive: true, force: true });
  };
}
