import { randomBytes } from 'node:crypto';
import { FlowProducer, Job, Queue, UnrecoverableError, Worker, type FlowJobNode } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import {
  GatewayJobName,
  InvalidJobError,
  JobName,
  JobPriority,
  batchLineSchema,
  batchRecordSchema,
  gatewayQueueName,
  parseGatewayJob,
  generateJobSchema,
  generateResultSchema,
  modelQueueName,
  type BatchLine,
  type GatewayJob,
  type BatchRecord,
  type BatchStatus,
  type GatewayKeys,
  type RedisKeys,
} from '#contracts';
import type { GatewayEnv } from '#config';
import { queueOptions, requestCancels, workerOptions, type Logger } from '#cluster';
import { ApiError, invalidRequest, notFound } from '../common/api-error.js';
import { page, pageOfIds } from '../common/pagination.js';
import { parseRequest } from '../common/validation.js';
import { chatResponse, completionResponse } from '../completions/openai-format.js';
import type { ChatPrompts } from '../completions/chat-template.js';
import { mapRequest, type CompletionKind } from '../completions/request-mapping.js';
import { linesOf, type FileStore } from '../files/file-store.js';
import type { JobQueues } from '../jobs/job-queues.js';
import type { ModelsService } from '../models/models.service.js';
import type { StateStore } from '../states/state-store.js';

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

/** The shape of one input line (its `body` is validated as the endpoint's request). */
const inputLineSchema = z.object({
  custom_id: z.string().min(1).max(512),
  method: z.literal('POST', { error: "expected 'POST'" }),
  url: z.string(),
  body: z.record(z.string(), z.unknown()),
});

const TERMINAL: readonly BatchStatus[] = ['completed', 'failed', 'expired', 'cancelled'];

/** Lines written to Redis per round trip while validating. @defaultValue 500 */
const WRITE_CHUNK = 500;

/** Moves a batch to `to` only from one of `from`; returns the status it had. */
const TRANSITION_SCRIPT = `
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
for allowed in string.gmatch(ARGV[1], '[^,]+') do
  if allowed == status then
    redis.call('HSET', KEYS[1], unpack(ARGV, 2))
    return status
  end
end
return status`;

const nowSeconds = (): number => Math.floor(Date.now() / 1000);
const requestId = (): string => `batch_req_${randomBytes(12).toString('hex')}`;

export interface BatchDependencies {
  redis: Redis;
  /** A connection for BullMQ (commands wait for Redis instead of failing fast). */
  connection: Redis;
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
 * OpenAI's Batch API. A batch is validated by a job in the gateway's own queue: every valid input
 * line becomes a generate job (at batch priority, below interactive requests) and all of them
 * children of one BullMQ flow whose parent — the finalizer — runs once every line has finished,
 * on whichever gateway replica takes it, and writes the output and error files joined by
 * `custom_id`. A malformed line goes to the error file; it never fails the batch.
 */
export class BatchesService {
  readonly queue: Queue;
  private readonly flows: FlowProducer;
  private worker: Worker | undefined;

  constructor(private readonly deps: BatchDependencies) {
    this.queue = new Queue(gatewayQueueName, queueOptions(deps.connection, deps.keys.prefix));
    this.flows = new FlowProducer({ connection: deps.connection, prefix: deps.keys.prefix });
  }

  /** Starts processing the gateway queue (validation, finalization, expiry). */
  start(): void {
    this.worker = new Worker(
      gatewayQueueName,
      async (job: Job) => {
        let item: GatewayJob;
        try {
          item = parseGatewayJob(job.name, job.data);
        } catch (error) {
          if (error instanceof InvalidJobError) throw new UnrecoverableError(error.message);
          throw error;
        }
        switch (item.name) {
          case GatewayJobName.ValidateBatch:
            await this.validate(item.data.batchId);
            break;
          case GatewayJobName.FinalizeBatch:
            await this.finalize(item.data.batchId, job);
            break;
          case GatewayJobName.ExpireBatch:
            await this.expire(item.data.batchId);
            break;
        }
      },
      workerOptions(this.deps.connection, this.deps.keys.prefix, 4),
    );
    this.worker.on('failed', (job, error) => {
      this.deps.logger.error({ err: error, jobId: job?.id }, 'batch job failed');
    });
  }

  async close(): Promise<void> {
    await this.worker?.close();
    await this.flows.close();
    await this.queue.close();
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
    const id = `batch_${randomBytes(12).toString('hex')}`;
    const created = nowSeconds();
    const record: BatchRecord = {
      id,
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
    const { redis, gateway } = this.deps;
    await redis
      .multi()
      .hset(gateway.batch(id), ...fieldsOf(record))
      .zadd(gateway.batchIndex(tenant), created * 1000, id)
      .exec();
    await this.queue.add(
      GatewayJobName.ValidateBatch,
      { batchId: id },
      { jobId: `${id}-validate` },
    );
    await this.queue.add(
      GatewayJobName.ExpireBatch,
      { batchId: id },
      { jobId: `${id}-expire`, delay: this.deps.env.BATCH_EXPIRY_SECONDS * 1000 },
    );
    return this.present(record);
  }

  async get(id: string, tenant: string) {
    return this.present(await this.load(id, tenant));
  }

  async list(query: unknown, tenant: string) {
    const { ids, hasMore } = await pageOfIds(
      this.deps.redis,
      this.deps.gateway.batchIndex(tenant),
      query,
    );
    const records = await Promise.all(ids.map((id) => this.load(id, tenant)));
    return page(await Promise.all(records.map((record) => this.present(record))), hasMore);
  }

  async cancel(id: string, tenant: string) {
    await this.load(id, tenant);
    const previous = await this.transition(id, ['validating', 'in_progress'], {
      status: 'cancelling',
      cancelling_at: nowSeconds(),
      stop_reason: 'cancelled',
    });
    // While validating, the validator sees the stop reason when it has queued the lines.
    if (previous === 'in_progress') await this.stopLines(id);
    return this.get(id, tenant);
  }

  private async load(id: string, tenant: string): Promise<BatchRecord> {
    const parsed = batchRecordSchema.safeParse(
      await this.deps.redis.hgetall(this.deps.gateway.batch(id)),
    );
    if (!parsed.success || parsed.data.owner !== tenant) throw notFound('batch', id);
    return parsed.data;
  }

  private async loadAny(id: string): Promise<BatchRecord | undefined> {
    const parsed = batchRecordSchema.safeParse(
      await this.deps.redis.hgetall(this.deps.gateway.batch(id)),
    );
    return parsed.success ? parsed.data : undefined;
  }

  private async transition(
    id: string,
    from: readonly BatchStatus[],
    fields: Partial<BatchRecord>,
  ): Promise<BatchStatus | undefined> {
    const previous = (await this.deps.redis.eval(
      TRANSITION_SCRIPT,
      1,
      this.deps.gateway.batch(id),
      from.join(','),
      ...fieldsOf(fields),
    )) as string | null;
    return previous === null ? undefined : (previous as BatchStatus);
  }

  /** The batch in OpenAI's shape; request counts are live while its lines run. */
  private async present(record: BatchRecord) {
    let completed = record.completed ?? 0;
    let failed = record.failed ?? record.rejected;
    if (!TERMINAL.includes(record.status) && record.status !== 'validating') {
      const parent = await Job.fromId(this.queue, finalizerId(record.id));
      if (parent !== undefined) {
        const counts = await parent.getDependenciesCount({ processed: true, ignored: true });
        completed = counts.processed ?? 0;
        failed = record.rejected + (counts.ignored ?? 0);
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

  /** Reads the input file line by line: valid lines become the flow's children. */
  private async validate(batchId: string): Promise<void> {
    const { redis, gateway, env, files } = this.deps;
    const record = await this.loadAny(batchId);
    if (record?.status !== 'validating') return;
    const kind: CompletionKind = record.endpoint === '/v1/chat/completions' ? 'chat' : 'completion';
    const children: FlowJobNode[] = [];
    const rejects: string[] = [];
    const accepted: [string, string][] = [];
    const customIds = new Set<string>();
    const checker = new LineChecker(this.deps, record.owner);
    let lineNumber = 0;
    let total = 0;
    for await (const line of linesOf(files.content(record.input_file_id))) {
      lineNumber += 1;
      if (line.trim() === '') continue;
      total += 1;
      if (total > env.BATCH_MAX_LINES) {
        await this.failValidation(batchId, {
          code: 'too_many_requests',
          message: `The input file has more than ${env.BATCH_MAX_LINES} requests (BATCH_MAX_LINES).`,
          line: lineNumber,
          param: null,
        });
        return;
      }
      const checked = await checker.check(line, kind, record.endpoint, customIds);
      if ('reject' in checked) {
        rejects.push(checked.reject);
        continue;
      }
      const jobId = `${batchId}-${lineNumber}`;
      const entry: BatchLine = { customId: checked.customId, jobId, model: checked.payload.model };
      accepted.push([String(lineNumber), JSON.stringify(entry)]);
      children.push({
        name: JobName.Generate,
        queueName: modelQueueName(checked.payload.model),
        data: checked.payload,
        opts: { jobId, priority: JobPriority.Batch, ignoreDependencyOnFailure: true },
      });
    }
    if (total === 0) {
      await this.failValidation(batchId, {
        code: 'empty_file',
        message: 'The input file has no requests.',
        line: null,
        param: null,
      });
      return;
    }
    // A validation retried after a crash writes the same lines again: start from an empty list.
    await redis.del(gateway.batchRejects(batchId));
    for (let start = 0; start < rejects.length; start += WRITE_CHUNK) {
      await redis.rpush(
        gateway.batchRejects(batchId),
        ...rejects.slice(start, start + WRITE_CHUNK),
      );
    }
    for (let start = 0; start < accepted.length; start += WRITE_CHUNK) {
      await redis.hset(
        gateway.batchLines(batchId),
        ...accepted.slice(start, start + WRITE_CHUNK).flat(),
      );
    }
    await redis.hset(gateway.batch(batchId), 'total', total, 'rejected', rejects.length);
    await this.flows.add({
      name: GatewayJobName.FinalizeBatch,
      queueName: gatewayQueueName,
      data: { batchId },
      opts: { jobId: finalizerId(batchId) },
      children,
    });
    await this.transition(batchId, ['validating'], {
      status: 'in_progress',
      in_progress_at: nowSeconds(),
    });
    const after = await this.loadAny(batchId);
    if (after?.stop_reason !== undefined) await this.stopLines(batchId);
  }

  private async failValidation(batchId: string, error: Record<string, unknown>): Promise<void> {
    await this.transition(batchId, ['validating', 'cancelling'], {
      status: 'failed',
      failed_at: nowSeconds(),
      errors: JSON.stringify([error]),
    });
  }

  /** Cancels every line: queued ones are removed, running ones stop within one engine tick. */
  private async stopLines(batchId: string): Promise<void> {
    const { redis, keys, gateway, jobs } = this.deps;
    const lines = Object.values(await redis.hgetall(gateway.batchLines(batchId))).map((raw) =>
      batchLineSchema.parse(JSON.parse(raw)),
    );
    for (let start = 0; start < lines.length; start += WRITE_CHUNK) {
      const chunk = lines.slice(start, start + WRITE_CHUNK);
      await requestCancels(
        redis,
        keys,
        chunk.map((line) => line.jobId),
      );
      // A line that is running (locked) is not removed: its worker stops it on the flag.
      await Promise.all(chunk.map((line) => jobs.queue(line.model).remove(line.jobId)));
    }
  }

  private async expire(batchId: string): Promise<void> {
    const record = await this.loadAny(batchId);
    if (
      record === undefined ||
      TERMINAL.includes(record.status) ||
      record.stop_reason !== undefined
    )
      return;
    await this.deps.redis.hset(this.deps.gateway.batch(batchId), 'stop_reason', 'expired');
    if (record.status === 'in_progress') await this.stopLines(batchId);
  }

  /** Runs when every line has finished: writes the output and error files. */
  private async finalize(batchId: string, parent: Job): Promise<void> {
    const { redis, gateway, keys, files } = this.deps;
    const record = await this.loadAny(batchId);
    if (record === undefined || TERMINAL.includes(record.status)) return;
    if (record.status === 'in_progress') {
      await this.transition(batchId, ['in_progress'], {
        status: 'finalizing',
        finalizing_at: nowSeconds(),
      });
    }
    const stop = (await this.loadAny(batchId))?.stop_reason;
    const values = await parent.getChildrenValues<unknown>();
    const failures = await parent.getIgnoredChildrenFailures();
    const lines = Object.entries(await redis.hgetall(gateway.batchLines(batchId)))
      .map(([number, raw]) => [Number(number), batchLineSchema.parse(JSON.parse(raw))] as const)
      .sort((a, b) => a[0] - b[0]);
    const output: string[] = [];
    const errors = await redis.lrange(gateway.batchRejects(batchId), 0, -1);
    const usage = { input: 0, cached: 0, output: 0 };
    const stopped = {
      code: stop === 'expired' ? 'batch_expired' : 'batch_cancelled',
      message:
        stop === 'expired'
          ? 'The batch expired before this request ran.'
          : 'The batch was cancelled before this request ran.',
    };
    for (const [, line] of lines) {
      const jobKey = `${keys.prefix}:${modelQueueName(line.model)}:${line.jobId}`;
      const failure = failures[jobKey];
      const result = jobKey in values ? generateResultSchema.safeParse(values[jobKey]) : undefined;
      if (
        result?.success === true &&
        !(stop !== undefined && result.data.choices.every((c) => c.finishReason === 'cancelled'))
      ) {
        usage.input += result.data.usage.promptTokens;
        usage.cached += result.data.usage.cachedTokens;
        usage.output += result.data.usage.completionTokens;
        const meta = { id: line.jobId, model: line.model, created: record.created_at };
        const body =
          record.endpoint === '/v1/chat/completions'
            ? chatResponse(meta, result.data)
            : completionResponse(meta, result.data);
        output.push(
          JSON.stringify({
            id: requestId(),
            custom_id: line.customId,
            response: { status_code: 200, request_id: line.jobId, body },
            error: null,
          }),
        );
      } else if (failure !== undefined || result?.success === false) {
        const message = failure ?? 'the worker returned a malformed result';
        errors.push(
          JSON.stringify({
            id: requestId(),
            custom_id: line.customId,
            response: null,
            error: { code: 'server_error', message },
          }),
        );
      } else {
        errors.push(
          JSON.stringify({
            id: requestId(),
            custom_id: line.customId,
            response: null,
            error: stopped,
          }),
        );
      }
    }
    const created = nowSeconds();
    const base = { owner: record.owner, created_at: created, purpose: 'batch_output' as const };
    const outputFile =
      output.length === 0
        ? undefined
        : await files.writeLines(
            {
              ...base,
              id: `file-${randomBytes(12).toString('hex')}`,
              filename: `${batchId}_output.jsonl`,
            },
            output,
          );
    const errorFile =
      errors.length === 0
        ? undefined
        : await files.writeLines(
            {
              ...base,
              id: `file-${randomBytes(12).toString('hex')}`,
              filename: `${batchId}_error.jsonl`,
            },
            errors,
          );
    const status: BatchStatus =
      stop === 'expired' ? 'expired' : stop === 'cancelled' ? 'cancelled' : 'completed';
    await this.transition(batchId, ['finalizing', 'cancelling', 'in_progress'], {
      status,
      ...(status === 'completed'
        ? { completed_at: created }
        : status === 'expired'
          ? { expired_at: created }
          : { cancelled_at: created }),
      ...(outputFile === undefined ? {} : { output_file_id: outputFile.id }),
      ...(errorFile === undefined ? {} : { error_file_id: errorFile.id }),
      completed: output.length,
      failed: errors.length,
      usage: JSON.stringify({
        input_tokens: usage.input,
        input_tokens_details: { cached_tokens: usage.cached },
        output_tokens: usage.output,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: usage.input + usage.output,
      }),
    });
    await redis.del(gateway.batchLines(batchId), gateway.batchRejects(batchId));
    await this.queue.remove(`${batchId}-expire`);
  }
}

const finalizerId = (batchId: string): string => `${batchId}-final`;

function fieldsOf(record: Partial<BatchRecord>): (string | number)[] {
  return Object.entries(record).flatMap(([name, value]) =>
    value === undefined ? [] : [name, value],
  );
}

/** Checks input lines, remembering per batch which models and states were already checked. */
class LineChecker {
  private readonly models = new Map<string, ApiError | null>();
  private readonly states = new Map<string, ApiError | null>();

  constructor(
    private readonly deps: BatchDependencies,
    private readonly owner: string,
  ) {}

  async check(
    line: string,
    kind: CompletionKind,
    endpoint: string,
    customIds: Set<string>,
  ): Promise<
    { reject: string } | { customId: string; payload: z.infer<typeof generateJobSchema> }
  > {
    let customId: string | null = null;
    try {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        throw invalidRequest('This line is not valid JSON.', null, 'invalid_json');
      }
      const candidate = (parsed as { custom_id?: unknown } | null)?.custom_id;
      if (typeof candidate === 'string') customId = candidate;
      const input = parseRequest(inputLineSchema, parsed);
      if (input.url !== endpoint) {
        throw invalidRequest(
          `The line's url '${input.url}' is not the batch's endpoint '${endpoint}'.`,
          'url',
        );
      }
      if (customIds.has(input.custom_id)) {
        throw invalidRequest(
          `The custom_id '${input.custom_id}' appears more than once in the file.`,
          'custom_id',
          'duplicate_custom_id',
        );
      }
      customIds.add(input.custom_id);
      if (input.body.stream === true)
        throw invalidRequest('Streaming is not available in batches.', 'body.stream');
      const request = await mapRequest(kind, input.body, this.owner, this.deps.chatPrompts);
      await this.remembered(this.models, request.model, () =>
        this.deps.models.assertKnown(request.model),
      );
      const stateId = request.stateId;
      if (stateId !== undefined) {
        await this.remembered(this.states, `${stateId}\0${request.model}`, async () => {
          const state = await this.deps.states.get(stateId, this.owner, 'state_id');
          if (state.model !== request.model)
            throw invalidRequest(`The state '${stateId}' belongs to another model.`, 'state_id');
        });
      }
      return { customId: input.custom_id, payload: generateJobSchema.parse(request.payload) };
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      return {
        reject: JSON.stringify({
          id: requestId(),
          custom_id: customId,
          response: { status_code: error.status, request_id: null, body: error.body },
          error: null,
        }),
      };
    }
  }

  private async remembered(
    cache: Map<string, ApiError | null>,
    key: string,
    check: () => Promise<void>,
  ): Promise<void> {
    if (!cache.has(key)) {
      try {
        await check();
        cache.set(key, null);
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        cache.set(key, error);
      }
    }
    const known = cache.get(key);
    if (known) throw known;
  }
}
