import type { Queue } from 'bullmq';
import type { RedisClient } from '#cluster';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RedisKeys, WorkerRecord } from '#contracts';
import type { QueueWork, WaitingWork } from './waiting-work.js';
import { registerQueuePriorityGauge } from './queue-priority-gauge.js';

/** BullMQ job states reported per queue. */
const QUEUE_STATES = [
  'waiting',
  'prioritized',
  'active',
  'delayed',
  'waiting-children',
  'completed',
  'failed',
] as const;

/**
 * How long one waiting-work reading serves: the gauges of one scrape share it (prom-client
 * collects them concurrently). @defaultValue 1000 ms
 */
const WORK_READING_MS = 1000;

/** Where the cluster-wide gauges read their values at scrape time. */
export interface ClusterSources {
  /**
   * The queue of every model the cluster knows (served now or recently) and of every model this
   * gateway has submitted to, by model id: a gateway replica that has served no request yet
   * reports the same queues as the others.
   */
  modelQueues(): Promise<ReadonlyMap<string, Queue>>;
  /** The gateway's own queue of batch jobs. */
  batchQueue: Queue;
  liveWorkers(): Promise<WorkerRecord[]>;
  waitingWork: WaitingWork;
}

/**
 * Prometheus metrics of this gateway (`/metrics`). Queue depths, live workers and prefix-cache
 * counters are read from Redis at scrape time, so every gateway replica reports the cluster's
 * current values for them; latencies and token counts are this replica's own. The gauges of
 * queues and workers are added by {@link MetricsExposition}, beside the features they read.
 */
export class GatewayMetrics {
  readonly registry = new Registry();

  readonly httpDuration = new Histogram({
    name: 'dijiang_http_request_duration_seconds',
    help: 'HTTP request latency by route and status (streams: until the response ends)',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });

  readonly timeToFirstToken = new Histogram({
    name: 'dijiang_time_to_first_token_seconds',
    help: 'From job submission to its first output token, per model',
    labelNames: ['model'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly timePerOutputToken = new Histogram({
    name: 'dijiang_time_per_output_token_seconds',
    help: 'Mean time between output tokens of one response, per model',
    labelNames: ['model'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [this.registry],
  });

  /** rate() of this is the output tokens/s served through this gateway. */
  readonly completionTokens = new Counter({
    name: 'dijiang_completion_tokens_total',
    help: 'Output tokens returned, per model',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });

  readonly promptTokens = new Counter({
    name: 'dijiang_prompt_tokens_total',
    help: 'Prompt tokens processed for requests through this gateway, per model',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });

  constructor(redis: RedisClient, keys: RedisKeys) {
    collectDefaultMetrics({ register: this.registry, prefix: 'dijiang_gateway_' });
    new Gauge({
      name: 'dijiang_prefix_cache',
      help: 'Prefix-state cache counters kept by the workers (hits, misses, bytes, evictions)',
      labelNames: ['counter'] as const,
      registers: [this.registry],
      async collect() {
        this.reset();
        const stats = await redis.hgetall(keys.prefixStats);
        for (const [counter, value] of Object.entries(stats)) {
          const number = Number(value);
          if (Number.isFinite(number)) this.set({ counter }, number);
        }
      },
    });
  }
}

/**
 * What `/metrics` exposes: this gateway's {@link GatewayMetrics}, plus gauges of the cluster's
 * queues and live workers (registered with them, read from `sources` at scrape time).
 */
export class MetricsExposition {
  private workReading: { at: number; work: Promise<Map<string, QueueWork>> } | undefined;

  constructor(
    private readonly metrics: GatewayMetrics,
    private readonly sources: ClusterSources,
  ) {
    new Gauge({
      name: 'dijiang_queue_jobs',
      help: 'Jobs per queue and state',
      labelNames: ['queue', 'state'] as const,
      registers: [metrics.registry],
      async collect() {
        this.reset();
        for (const queue of [...(await sources.modelQueues()).values(), sources.batchQueue]) {
          const counts = await queue.getJobCounts(...QUEUE_STATES);
          for (const state of QUEUE_STATES)
            this.set({ queue: queue.name, state }, counts[state] ?? 0);
        }
      },
    });
    const work = () => this.waitingWork();
    new Gauge({
      name: 'dijiang_queue_waiting_input_bytes',
      help:
        'UTF-8 bytes of the text that jobs waiting for a worker will read (inline text or ' +
        'document size; tokens for a byte-level tokenizer), per model; extrapolated from the ' +
        'first jobs to run when very many wait',
      labelNames: ['model'] as const,
      registers: [metrics.registry],
      async collect() {
        this.reset();
        for (const [model, queue] of await work()) this.set({ model }, queue.inputBytes);
      },
    });
    new Gauge({
      name: 'dijiang_queue_waiting_output_tokens',
      help:
        'The most tokens that jobs waiting for a worker may generate (max_tokens x n), per ' +
        'model; extrapolated from the first jobs to run when very many wait',
      labelNames: ['model'] as const,
      registers: [metrics.registry],
      async collect() {
        this.reset();
        for (const [model, queue] of await work()) this.set({ model }, queue.outputTokens);
      },
    });
    // Model queues only: the batch queue's jobs have no priority class.
    registerQueuePriorityGauge(metrics.registry, async () =>
      (await sources.modelQueues()).values(),
    );
    new Gauge({
      name: 'dijiang_live_workers',
      help: 'Workers whose heartbeat is current',
      registers: [metrics.registry],
      async collect() {
        this.set((await sources.liveWorkers()).length);
      },
    });
  }

  /** The waiting work of every known model, read once for the gauges of one scrape. */
  private async waitingWork(): Promise<Map<string, QueueWork>> {
    const now = Date.now();
    if (this.workReading === undefined || now - this.workReading.at > WORK_READING_MS) {
      const work = this.readWaitingWork();
      this.workReading = { at: now, work };
      work.catch(() => {
        this.workReading = undefined;
      });
    }
    return this.workReading.work;
  }

  private async readWaitingWork(): Promise<Map<string, QueueWork>> {
    const work = new Map<string, QueueWork>();
    for (const [model, queue] of await this.sources.modelQueues()) {
      work.set(model, await this.sources.waitingWork.read(queue));
    }
    return work;
  }

  get contentType(): string {
    return this.metrics.registry.contentType;
  }

  /** Every metric in Prometheus's text format. */
  async scrape(): Promise<string> {
    return this.metrics.registry.metrics();
  }
}
