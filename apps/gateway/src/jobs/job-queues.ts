import { randomBytes } from 'node:crypto';
import type { OnApplicationShutdown } from '@nestjs/common';
import { Job, Queue } from 'bullmq';
import type { RedisClient } from '#cluster';
import { z } from 'zod';
import {
  gatewayJobRecordDefaults,
  gatewayJobRecordSchema,
  jobPayloadSchemas,
  modelQueueName,
  type GatewayJobRecord,
  type GatewayJobRecordInput,
  type GatewayKeys,
  type JobName,
  type JobPriority,
  type JobPayloadInput,
  type RedisKeys,
} from '#contracts';
import { queueOptions, requestCancel } from '#cluster';
import { notFound, rateLimited } from '../common/api-error.js';
import { pageOfIds } from '../common/pagination.js';

/** How long a gateway job record outlives its job's stream. @defaultValue 7 days */
const RECORD_TTL_SECONDS = 7 * 24 * 3600;
/** How long a queue-depth reading is reused. @defaultValue 100 ms */
const DEPTH_CACHE_MS = 100;

/** `cmpl-…`, `job_…`: ids clients see; they double as BullMQ job ids (no ':' allowed there). */
export function newId(prefix: string): string {
  return `${prefix}${randomBytes(12).toString('hex')}`;
}

export interface Submission<N extends JobName> {
  jobId: string;
  name: N;
  payload: JobPayloadInput<N>;
  priority: JobPriority;
  record: Omit<GatewayJobRecordInput, 'type'>;
}

/**
 * The model queues as a gateway sees them: submitting jobs (with the queue-depth cap), reading
 * their state and results, and cancelling them. Each job also gets a gateway record (owner,
 * presentation kind) so that ownership is checked without loading the BullMQ job.
 */
export class JobQueues implements OnApplicationShutdown {
  private readonly queues = new Map<string, Queue>();
  private readonly depths = new Map<string, { at: number; waiting: number }>();

  constructor(
    private readonly connection: RedisClient,
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly gateway: GatewayKeys,
    private readonly maxDepth: number,
  ) {}

  queue(model: string): Queue {
    let queue = this.queues.get(model);
    if (queue === undefined) {
      queue = new Queue(modelQueueName(model), queueOptions(this.connection, this.keys.prefix));
      this.queues.set(model, queue);
    }
    return queue;
  }

  /** The model queues this gateway has used, by model id. */
  known(): ReadonlyMap<string, Queue> {
    return this.queues;
  }

  /**
   * Refuses with 429 when jobs of this priority already wait in the model's queue. The count is
   * read from Redis at most every DEPTH_CACHE_MS per queue and priority, and counts this
   * gateway's own submissions in between, so a burst cannot overshoot the cap by much.
   */
  async assertCapacity(model: string, priority: JobPriority): Promise<void> {
    const key = `${model}\u0000${priority}`;
    const now = Date.now();
    let depth = this.depths.get(key);
    if (depth === undefined || now - depth.at > DEPTH_CACHE_MS) {
      const counts = await this.queue(model).getCountsPerPriority([priority]);
      depth = { at: now, waiting: counts[String(priority)] ?? 0 };
      this.depths.set(key, depth);
    }
    if (depth.waiting >= this.maxDepth) {
      throw rateLimited(
        `The queue for model '${model}' is full (${depth.waiting} requests waiting, limit ` +
          `${this.maxDepth}); retry shortly.`,
        5,
        'queue_full',
      );
    }
    depth.waiting += 1;
  }

  async submit<N extends JobName>(submission: Submission<N>): Promise<void> {
    // Validated here as the worker will validate it: a gateway bug must not poison the queue.
    const payload = jobPayloadSchemas[submission.name].parse(submission.payload);
    await this.assertCapacity(payload.model, submission.priority);
    await this.writeRecord(submission.jobId, { ...submission.record, type: submission.name });
    await this.queue(payload.model).add(submission.name, payload, {
      jobId: submission.jobId,
      priority: submission.priority,
    });
  }

  /**
   * Writes the job's record, encoded as hash fields (flags as '1'/'0', defaults filled in). A
   * `/v1/jobs` job is also listed in its tenant's index, whose entries older than a record's
   * lifetime are dropped on the way.
   */
  async writeRecord(jobId: string, record: GatewayJobRecordInput): Promise<void> {
    const stored = z.encode(gatewayJobRecordSchema, { ...gatewayJobRecordDefaults, ...record });
    const fields = Object.entries(stored).flatMap(([name, value]) =>
      value === undefined ? [] : [name, typeof value === 'string' ? value : JSON.stringify(value)],
    );
    const key = this.gateway.gatewayJob(jobId);
    const write = this.redis
      .multi()
      .hset(key, ...fields)
      .expire(key, RECORD_TTL_SECONDS);
    if (record.kind === 'job') {
      const index = this.gateway.jobIndex(record.owner);
      const now = Date.now();
      write.zadd(index, now, jobId).zremrangebyscore(index, 0, now - RECORD_TTL_SECONDS * 1000);
    }
    await write.exec();
  }

  /** One page of a tenant's `/v1/jobs` ids (cursor pagination, newest first unless asked). */
  async pageOfJobIds(tenant: string, query: unknown): Promise<{ ids: string[]; hasMore: boolean }> {
    return pageOfIds(this.redis, this.gateway.jobIndex(tenant), query);
  }

  /** The job's record, or 404 when it does not exist or belongs to another tenant. */
  async record(jobId: string, tenant: string, what = 'job'): Promise<GatewayJobRecord> {
    const raw = await this.redis.hgetall(this.gateway.gatewayJob(jobId));
    const parsed = gatewayJobRecordSchema.safeParse(raw);
    if (!parsed.success || parsed.data.owner !== tenant) throw notFound(what, jobId);
    return parsed.data;
  }

  async job(model: string, jobId: string): Promise<Job | undefined> {
    return Job.fromId(this.queue(model), jobId);
  }

  /** Why a job can no longer write to its stream, or undefined while it can. */
  async endedWithoutStream(model: string, jobId: string): Promise<string | undefined> {
    const job = await this.job(model, jobId);
    if (job === undefined) return 'the job no longer exists';
    if (job.finishedOn !== undefined && (await job.getState()) === 'failed')
      return job.failedReason;
    return undefined;
  }

  async cancel(jobId: string, record: GatewayJobRecord): Promise<void> {
    await requestCancel(this.redis, this.keys, jobId);
    if (record.cancelledAt === undefined) {
      await this.redis.hset(
        this.gateway.gatewayJob(jobId),
        'cancelledAt',
        String(Math.floor(Date.now() / 1000)),
      );
    }
  }

  /**
   * Counts a client that reads the job's stream in (+1) or out (-1); returns how many read it
   * now, on every gateway.
   */
  async countReader(jobId: string, change: 1 | -1): Promise<number> {
    return this.redis.hincrby(this.gateway.gatewayJob(jobId), 'readers', change);
  }

  /** How many clients read the job's stream now, on every gateway. */
  async readerCount(jobId: string): Promise<number> {
    return Number((await this.redis.hget(this.gateway.gatewayJob(jobId), 'readers')) ?? 0);
  }

  /** Closes the queues once the HTTP server has drained (their connection closes after). */
  async onApplicationShutdown(): Promise<void> {
    await Promise.all([...this.queues.values()].map((queue) => queue.close()));
  }
}
