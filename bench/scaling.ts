/**
 * Horizontal scaling (`node dist/bench/scaling.js`, after `npm run build`): the same fixed batch
 * of generate jobs (default 64 jobs x 64 tokens, `small` preset) through BullMQ on a private
 * redis-server, drained by 1 worker process and then by 2, each with one onnxruntime intra-op
 * thread (ENGINE_THREADS=1). Reports jobs/s, tokens/s and the 2-vs-1 ratio (target >= 1.7x), the
 * median of RUNS timed batches per configuration, each after a warm-up batch.
 * Results: bench/results/scaling.json and scaling.md. Nothing is asserted.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Job, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { generateResultSchema, JobName, modelQueueName, type JobPayloadInput } from '#contracts';
import { queueOptions } from '#cluster';
import { isLogMessage, ReadyMessage, spawnService, type ServiceProcess } from '#processes';
import { withBenchCluster } from './fixtures.js';
import { median } from './stats.js';
import { describeMachine, machineInfo, markdownTable, verdict } from './machine.js';

const JOBS = Number(process.env.BENCH_SCALING_JOBS ?? 64);
const TOKENS = Number(process.env.BENCH_SCALING_TOKENS ?? 64);
/** Timed batches per configuration; the median is reported. @defaultValue 3 */
const RUNS = Number(process.env.BENCH_SCALING_RUNS ?? 3);
const PRESET = 'small';
const MODEL_ID = `${PRESET}-dijiang`;
const TARGET_RATIO = 1.7;
const WORKER_COUNTS = [1, 2] as const;
const POLL_MS = 20;

const workerEntry = fileURLToPath(new URL('../apps/worker/src/main.js', import.meta.url));

interface BatchTiming {
  seconds: number;
  jobsPerSecond: number;
  tokensPerSecond: number;
}

/** Seeded sampling with end-of-text (id 256) banned, so every job makes exactly TOKENS tokens. */
function payload(index: number): JobPayloadInput<'generate'> {
  return {
    model: MODEL_ID,
    owner: 'bench',
    input: { text: `Scaling benchmark prompt number ${index}.` },
    sampling: {
      temperature: 0.8,
      top_p: 0.95,
      seed: index,
      max_tokens: TOKENS,
      logit_bias: { '256': -100 },
    },
  };
}

/** Adds `JOBS` jobs at once and waits until all completed; returns the time and tokens made. */
async function runBatch(queue: Queue, label: string): Promise<BatchTiming> {
  const started = performance.now();
  const jobs = await queue.addBulk(
    Array.from({ length: JOBS }, (_unused, index) => ({
      name: JobName.Generate,
      data: payload(index),
      opts: { jobId: `${label}-${index}`, removeOnComplete: false },
    })),
  );
  for (;;) {
    const counts = await queue.getJobCounts('completed', 'failed');
    if ((counts.failed ?? 0) > 0) throw new Error(`${label}: ${counts.failed} job(s) failed`);
    if ((counts.completed ?? 0) >= JOBS) break;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  const seconds = (performance.now() - started) / 1000;
  let tokens = 0;
  for (const added of jobs) {
    const job = await Job.fromId(queue, added.id ?? '');
    const result = generateResultSchema.parse(job?.returnvalue);
    tokens += result.usage.completionTokens;
  }
  if (tokens !== JOBS * TOKENS) {
    throw new Error(`${label}: expected ${JOBS * TOKENS} tokens, the jobs made ${tokens}`);
  }
  await queue.clean(0, JOBS, 'completed');
  return { seconds, jobsPerSecond: JOBS / seconds, tokensPerSecond: tokens / seconds };
}

async function measure(
  redisUrl: string,
  modelDir: string,
  workerCount: number,
): Promise<{ runs: BatchTiming[]; median: BatchTiming }> {
  const prefix = `bench-scaling-${workerCount}`;
  const workers: ServiceProcess[] = [];
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue(modelQueueName(MODEL_ID), queueOptions(connection, prefix));
  try {
    for (let index = 0; index < workerCount; index += 1) {
      workers.push(
        await spawnService(`worker-${index}`, process.execPath, [workerEntry], {
          env: {
            ...process.env,
            REDIS_URL: redisUrl,
            QUEUE_PREFIX: prefix,
            MODEL_DIR: modelDir,
            WORKER_ID: `bench-${workerCount}-${index}`,
            ENGINE_THREADS: '1',
            LOG_LEVEL: 'info',
          },
          isReady: (line) => isLogMessage(line, ReadyMessage.Worker),
        }),
      );
    }
    await runBatch(queue, `warmup-${workerCount}`);
    const runs: BatchTiming[] = [];
    for (let run = 0; run < RUNS; run += 1)
      runs.push(await runBatch(queue, `run-${workerCount}-${run}`));
    const seconds = median(runs.map((timing) => timing.seconds));
    return {
      runs,
      median: {
        seconds,
        jobsPerSecond: JOBS / seconds,
        tokensPerSecond: (JOBS * TOKENS) / seconds,
      },
    };
  } finally {
    await Promise.all(workers.map((worker) => worker.stop()));
    await queue.obliterate({ force: true });
    await queue.close();
    await connection.quit();
  }
}

async function main(): Promise<void> {
  const machine = machineInfo();
  await withBenchCluster('scaling', PRESET, async ({ redisUrl, modelDir }) => {
    const results: Record<number, Awaited<ReturnType<typeof measure>>> = {};
    for (const count of WORKER_COUNTS) results[count] = await measure(redisUrl, modelDir, count);
    const one = results[1]?.median;
    const two = results[2]?.median;
    if (one === undefined || two === undefined) throw new Error('a configuration did not run');
    const ratio = two.tokensPerSecond / one.tokensPerSecond;
    const command = 'npm run bench -- scaling';
    const rows = {
      machine,
      command,
      preset: PRESET,
      jobs: JOBS,
      tokensPerJob: TOKENS,
      runsPerConfiguration: RUNS,
      engineThreadsPerWorker: 1,
      workers: results,
      ratio,
      target: TARGET_RATIO,
    };
    const out = fileURLToPath(new URL('../../bench/results/', import.meta.url));
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'scaling.json'), `${JSON.stringify(rows, null, 2)}\n`);
    const fmt = (value: number, digits = 1) => value.toFixed(digits);
    const markdown = [
      '# Horizontal scaling',
      '',
      describeMachine(machine),
      '',
      `Command: \`${command}\`. A batch of ${JOBS} generate jobs x ${TOKENS} tokens (\`${PRESET}\` preset, ` +
        `end-of-text banned so every job makes exactly ${TOKENS} tokens) added to BullMQ at once on a ` +
        `private redis-server, drained by N worker processes with one onnxruntime intra-op thread ` +
        `each; median of ${RUNS} timed batches after a warm-up batch.`,
      '',
      markdownTable(
        ['workers', 'batch s (median)', 'jobs/s', 'tokens/s', 'batch s (all runs)'],
        WORKER_COUNTS.map((count) => {
          const result = results[count];
          return [
            String(count),
            fmt(result?.median.seconds ?? Number.NaN, 2),
            fmt(result?.median.jobsPerSecond ?? Number.NaN),
            fmt(result?.median.tokensPerSecond ?? Number.NaN, 0),
            (result?.runs ?? []).map((run) => fmt(run.seconds, 2)).join(', '),
          ];
        }),
      ),
      '',
      `2 workers vs 1: ${fmt(ratio, 2)}x — target >= ${TARGET_RATIO}x: ${verdict(ratio >= TARGET_RATIO)}`,
      '',
    ].join('\n');
    await writeFile(join(out, 'scaling.md'), markdown);
    process.stdout.write(markdown);
  });
}

await main();
