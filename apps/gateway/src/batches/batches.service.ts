import { randomBytes } from 'node:crypto';
import type { OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import type { Queue } from 'bullmq';
import type { RedisClient } from '#cluster';
import { z } from 'zod';
import type { BatchRecord, GatewayKeys, RedisKeys } from '#contracts';
import type { GatewayEnv } from '#config';
import type { Logger } from '#cluster';
import { invalidRequest, notFound } from '../common/api-error.js';
import { page } from '../common/pagination.js';
import { parseRequest } from '../common/validation.js';
import type { ChatPrompts } from '../completions/chat-template.js';
import type { FileStore } from '../files/file-store.js';
import type { JobQueues } from '../jobs/job-queues.js';
import type { ModelsService } from '../models/models.service.js';
import type { StateStore } from '../states/state-store.js';
import { BatchProcessor } from './batch-processor.js';
import { BatchStore, isTerminal, nowSeconds } from './batch-store.js';

export const batchCreateSchema = z.strictObject({
  input_file_id: z.string().min(1),
  endpoint: z.enum(['/v1/completions', '/v1/chat/completions'], {
    error: "expected '/v1/completions' or '/v1/chat/completions'",
  }),
  completion_window: z.literal('24h', { error: "expected '24h'" }),
  metadata: z.record(z.string().max(64), z.string().max(512)).nullable().optional(),
  /** OpenAI's output-file expiry; output files here live until deleted. */
  output_expires_after: z
    .strictObject({ anchor: z.literal('created_at'), seconds: z.number().int().min(3600) })
    .optional(),
});

export interface BatchDependencies {
  redis: RedisClient;
  /** A connection for BullMQ (commands wait for Redis instead of failing fast). */
  connection: RedisClient;
  keys: RedisKeys;
  gateway: GatewayKeys;
  files: FileStore;
  jobs: JobQueues;
  models: ModelsService;
  chatPrompts: ChatPrompts;
  states: StateStore;
  env: GatewayEnv;
  logger: Logger;
}

/**
 * OpenAI's Batch API for the routes: creates, presents, lists and cancels batches. The records
 * live in a {@link BatchStore}; the gateway queue's {@link BatchProcessor} validates, finalizes
 * and expires them.
 */
export class BatchesService implements OnModuleInit, OnApplicationShutdown {
  /** The gateway queue, for metrics and the dashboard. */
  readonly queue: Queue;
  private readonly store: BatchStore;
  private readonly processor: BatchProcessor;

  constructor(private readonly deps: BatchDependencies) {
    this.store = new BatchStore(deps.redis, deps.gateway);
    this.processor = new BatchProcessor({ ...deps, store: this.store });
    this.queue = this.processor.queue;
  }

  /** Starts processing the gateway queue (validation, finalization, expiry). */
  onModuleInit(): void {
    this.processor.start();
  }

  /** Stops the batch worker and closes its queue once the HTTP server has drained. */
  async onApplicationShutdown(): Promise<void> {
    await this.processor.close();
  }

  async create(body: unknown, tenant: string) {
    const request = parseRequest(batchCreateSchema, body);
    const file = await this.deps.files.get(request.input_file_id, tenant, 'input_file_id');
    if (file.purpose !== 'batch') {
      throw invalidRequest(
        `The file '${file.id}' has purpose '${file.purpose}'; batches need a file uploaded with purpose 'batch'.`,
        'input_file_id',
      );
    }
    const created = nowSeconds();
    const record: BatchRecord = {
      id: `batch_${randomBytes(12).toString('hex')}`,
      owner: tenant,
      status: 'validating',
      endpoint: request.endpoint,
      input_file_id: file.id,
      completion_window: request.completion_window,
      created_at: created,
      expires_at: created + this.deps.env.BATCH_EXPIRY_SECONDS,
      total: 0,
      rejected: 0,
      metadata: JSON.stringify(request.metadata ?? null),
    };
    await this.store.create(record);
    await this.processor.schedule(record.id);
    return this.present(record);
  }

  async get(id: string, tenant: string) {
    return this.present(await this.load(id, tenant));
  }

  async list(query: unknown, tenant: string) {
    const { ids, hasMore } = await this.store.pageOfIds(tenant, query);
    const records = await Promise.all(ids.map((id) => this.load(id, tenant)));
    return page(await Promise.all(records.map((record) => this.present(record))), hasMore);
  }

  async cancel(id: string, tenant: string) {
    await this.load(id, tenant);
    const previous = await this.store.transition(id, 'cancelling', { stop_reason: 'cancelled' });
    // While validating, the validator sees the stop reason when it has queued the lines.
    if (previous === 'in_progress') await this.processor.stopLines(id);
    return this.get(id, tenant);
  }

  /** The tenant's batch; another tenant's is as absent as a missing one. */
  private async load(id: string, tenant: string): Promise<BatchRecord> {
    const record = await this.store.find(id);
    if (record?.owner !== tenant) throw notFound('batch', id);
    return record;
  }

  /** The batch in OpenAI's shape; request counts are live while its lines run. */
  private async present(record: BatchRecord) {
    let completed = record.completed ?? 0;
    let failed = record.failed ?? record.rejected;
    if (!isTerminal(record.status) && record.status !== 'validating') {
      const finished = await this.processor.finishedLines(record.id);
      if (finished !== undefined) {
        completed = finished.processed;
        failed = record.rejected + finished.ignored;
      }
    }
    const optional = (value: number | undefined) => value ?? null;
    return {
      id: record.id,
      object: 'batch' as const,
      endpoint: record.endpoint,
      errors:
        record.errors === undefined
          ? null
          : { object: 'list', data: JSON.parse(record.errors) as unknown },
      input_file_id: record.input_file_id,
      completion_window: record.completion_window,
      status: record.status,
      output_file_id: record.output_file_id ?? null,
      error_file_id: record.error_file_id ?? null,
      created_at: record.created_at,
      in_progress_at: optional(record.in_progress_at),
      expires_at: record.expires_at,
      finalizing_at: optional(record.finalizing_at),
      completed_at: optional(record.completed_at),
      failed_at: optional(record.failed_at),
      expired_at: optional(record.expired_at),
      cancelling_at: optional(record.cancelling_at),
      cancelled_at: optional(record.cancelled_at),
      request_counts: { total: record.total, completed, failed },
      metadata: JSON.parse(record.metadata) as unknown,
      ...(record.usage === undefined ? {} : { usage: JSON.parse(record.usage) as unknown }),
    };
  }
}
