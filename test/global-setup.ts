import { rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { TestProject } from 'vitest/node';
import { assertAppsBuilt, buildTestModel, ensureRedisServerBinary, TestRedis } from '#testing';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A private redis-server for this test run (tests that kill Redis start their own). */
    redisUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  assertAppsBuilt();
  ensureRedisServerBinary();
  const modelDir = await buildTestModel();
  const redis = await TestRedis.start();
  project.provide('redisUrl', redis.url);
  return async () => {
    await redis.stop();
    await rm(dirname(modelDir), { recursive: true, force: true });
  };
}
