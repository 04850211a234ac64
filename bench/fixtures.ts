import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startRedisServer } from '#processes';
import { createPresetBundle, type PresetName } from '#model';

export interface BenchCluster {
  redisUrl: string;
  /** A bundle of the preset, built for this run. */
  modelDir: string;
}

/**
 * Runs `benchmark` against a private redis-server and a freshly built model bundle of `preset`,
 * both in a temporary folder that is removed afterwards, for benchmarks that start workers.
 */
export async function withBenchCluster<T>(
  label: string,
  preset: PresetName,
  benchmark: (cluster: BenchCluster) => Promise<T>,
): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), `dijiang-bench-${label}-`));
  try {
    const modelDir = join(dir, preset);
    await createPresetBundle(modelDir, preset);
    const redis = await startRedisServer({
      port: await freePort(),
      dir: join(dir, 'redis'),
      appendOnly: false,
    });
    try {
      return await benchmark({ redisUrl: redis.url, modelDir });
    } finally {
      await redis.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
