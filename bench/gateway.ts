/**
 * Gateway benchmarks (`node dist/bench/gateway.js`, after `npm run build`):
 * - overhead: p50/p99 latency of a `max_tokens: 1` completion through gateway + worker (HTTP,
 *   BullMQ, Redis stream) against the same request on the engine in-process, one run each;
 * - async job submission throughput: POST /v1/jobs from a closed-loop HTTP load generator
 *   (autocannon, 64 keep-alive connections) for a fixed time; target >= 1,000 submissions/s.
 * Results: bench/results/gateway.json and gateway.md. Nothing is asserted.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { JobPriority, redisKeys } from '#contracts';
import { connectRedisOrFail, createLogger, createRedis, WorkerRegistry } from '#cluster';
import { freePort, isLogMessage, ReadyMessage, spawnService, startRedisServer } from '#processes';
import { DEFAULT_SAMPLING, Engine } from '#engine';
import { percentile } from './stats.js';
import { describeMachine, machineInfo, markdownTable, verdict } from './machine.js';

const REQUESTS = Number(process.env.BENCH_GATEWAY_REQUESTS ?? 200);
const WARMUP = 20;
const LOAD_SECONDS = Number(process.env.BENCH_GATEWAY_LOAD_SECONDS ?? 5);
const CONNECTIONS = 64;
const SUBMISSION_TARGET = 1000;
const KEY = 'sk-bench-0123456789';

const entry = (app: string) =>
  fileURLToPath(new URL(`../apps/${app}/src/main.js`, import.meta.url));

async function latencies(count: number, run: () => Promise<void>): Promise<number[]> {
  for (let index = 0; index < WARMUP; index += 1) await run();
  const result: number[] = [];
  for (let index = 0; index < count; index += 1) {
    const started = performance.now();
    await run();
    result.push(performance.now() - started);
  }
  return result;
}

async function inProcess(bundleDir: string): Promise<number[]> {
  const engine = await Engine.start({ bundleDir });
  let id = 0;
  try {
    return await latencies(REQUESTS, async () => {
      id += 1;
      await engine.run(
        {
          id: `bench-${id}`,
          kind: 'generate',
          priority: JobPriority.Interactive,
          text: 'Hello',
          prefixBlockTokens: 0,
          generate: {
            sampling: { ...DEFAULT_SAMPLING, temperature: 0 },
            choice: 0,
            maxTokens: 1,
            stop: [],
          },
        },
        { start: () => ({ position: 0, skip: 0, replay: [] }) },
      );
    });
  } finally {
    await engine.close();
  }
}

async function submissions(url: string): Promise<{ perSecond: number; failures: number }> {
  // autocannon rather than fetch: on a 2-core machine the load generator shares the CPU with the
  // gateway and Redis, and every cycle fetch spends on the client side is taken from the gateway.
  const result = await autocannon({
    url: `${url}/v1/jobs`,
    method: 'POST',
    headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ type: 'score', model: 'bench-idle', prompt: 'x' }),
    connections: CONNECTIONS,
    duration: LOAD_SECONDS,
  });
  return {
    perSecond: result['2xx'] / result.duration,
    failures: result.non2xx + result.errors,
  };
}

async function main(): Promise<void> {
  const machine = machineInfo();
  const dir = await mkdtemp(join(tmpdir(), 'dijiang-bench-gateway-'));
  const bundleDir = join(dir, 'tiny');
  const created = spawnSync(
    process.execPath,
    [entry('cli'), 'model', 'create', '--preset', 'tiny', '--out', bundleDir],
    {
      encoding: 'utf8',
    },
  );
  if (created.status !== 0) throw new Error(`model create failed:\n${created.stderr}`);
  const redis = await startRedisServer({
    port: await freePort(),
    dir: join(dir, 'redis'),
    appendOnly: false,
  });
  const env = { ...process.env, REDIS_URL: redis.url, QUEUE_PREFIX: 'bench', LOG_LEVEL: 'info' };
  const worker = await spawnService('worker', process.execPath, [entry('worker')], {
    env: { ...env, MODEL_DIR: bundleDir, WORKER_ID: 'bench-worker' },
    isReady: (line) => isLogMessage(line, ReadyMessage.Worker),
  });
  const gateway = await spawnService('gateway', process.execPath, [entry('gateway')], {
    env: {
      ...env,
      PORT: '0',
      API_KEYS: `bench:${KEY}`,
      RATE_LIMIT_RPM: '0',
      RATE_LIMIT_TPM: '0',
      MAX_QUEUE_DEPTH: '10000000',
    },
    isReady: (line) => isLogMessage(line, ReadyMessage.Gateway),
  });
  const { url } = JSON.parse(gateway.readyLine) as { url: string };
  // A worker record that advertises a model but consumes nothing: submitted jobs stay queued.
  const registryRedis = createRedis(
    redis.url,
    'commands',
    'bench-idle',
    createLogger('bench', 'silent'),
  );
  await connectRedisOrFail(registryRedis, redis.url);
  const idle = new WorkerRegistry(
    registryRedis,
    redisKeys('bench'),
    {
      id: 'bench-idle',
      host: 'bench',
      pid: process.pid,
      models: ['bench-idle'],
      capacity: 1,
      startedAt: new Date().toISOString(),
    },
    5000,
    createLogger('bench', 'silent'),
  );
  await idle.start();
  try {
    const model = 'tiny-dijiang';
    const engine = await inProcess(bundleDir);
    const viaGateway = await latencies(REQUESTS, async () => {
      const response = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ model, prompt: 'Hello', max_tokens: 1, temperature: 0 }),
      });
      if (response.status !== 200) throw new Error(`completion failed: ${await response.text()}`);
      await response.arrayBuffer();
    });
    const load = await submissions(url);
    const command = 'npm run bench -- gateway';
    const rows = {
      machine,
      command,
      requests: REQUESTS,
      latencyMs: {
        inProcess: { p50: percentile(engine, 50), p99: percentile(engine, 99) },
        gateway: { p50: percentile(viaGateway, 50), p99: percentile(viaGateway, 99) },
      },
      submissions: {
        connections: CONNECTIONS,
        seconds: LOAD_SECONDS,
        perSecond: load.perSecond,
        failures: load.failures,
        target: SUBMISSION_TARGET,
      },
    };
    const out = fileURLToPath(new URL('../../bench/results/', import.meta.url));
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'gateway.json'), `${JSON.stringify(rows, null, 2)}\n`);
    const fmt = (value: number) => value.toFixed(2);
    const markdown = [
      '# Gateway benchmarks',
      '',
      describeMachine(machine),
      '',
      `Command: \`${command}\`.`,
      '',
      `Latency of a \`max_tokens: 1\` completion (tiny model, ${REQUESTS} sequential requests after ${WARMUP} warm-up, one run):`,
      '',
      markdownTable(
        ['path', 'p50 ms', 'p99 ms'],
        [
          [
            'engine in-process',
            fmt(rows.latencyMs.inProcess.p50),
            fmt(rows.latencyMs.inProcess.p99),
          ],
          [
            'gateway + worker (HTTP, BullMQ, Redis)',
            fmt(rows.latencyMs.gateway.p50),
            fmt(rows.latencyMs.gateway.p99),
          ],
          [
            'gateway overhead',
            fmt(rows.latencyMs.gateway.p50 - rows.latencyMs.inProcess.p50),
            fmt(rows.latencyMs.gateway.p99 - rows.latencyMs.inProcess.p99),
          ],
        ],
      ),
      '',
      `Async job submissions (POST /v1/jobs, autocannon, ${CONNECTIONS} keep-alive connections, ${LOAD_SECONDS} s): ` +
        `${load.perSecond.toFixed(0)}/s, ${load.failures} failures — target >= ${SUBMISSION_TARGET}/s: ${verdict(load.perSecond >= SUBMISSION_TARGET)}`,
      '',
    ].join('\n');
    await writeFile(join(out, 'gateway.md'), markdown);
    process.stdout.write(markdown);
  } finally {
    await idle.stop();
    await registryRedis.quit();
    await gateway.stop();
    await worker.stop();
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
