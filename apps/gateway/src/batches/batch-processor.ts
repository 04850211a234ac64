import { FlowProducer, Job, Queue, UnrecoverableError, Worker, type FlowJobNode } from 'bullmq';
import type { RedisClient } from '#cluster';
import {
  GatewayJobName,
  InvalidJobError,
  JobName,
  JobPriority,
  assertProcessorsCover,
  gatewayQueueName,
  modelQueueName,
  parseGatewayJob,
  type BatchLine,
  type GatewayJob,
  type ProcessorMap,
  type RedisKeys,
} from '#contracts';
import type { GatewayEnv } from '#config';
import { queueOptions, requestCancels, workerOptions, type Logger } from '#cluster';
import { linesOf, type FileStore } from '../files/file-store.js';
import type { JobQueues } from '../jobs/job-queues.js';
import { BatchLineChecker, type LineCheckerDependencies } from './batch-lines.js';
import { joinLines, openAiBatchUsage, writeBatchFiles } from './batch-output.js';
import { isTerminal, nowSeconds, type BatchStore } from './batch-store.js';

/** Batch jobs (validations, finalizations, expiries) one gateway runs at once. @defaultValue 4 */
const CONCURRENCY = 4;

/** Line jobs cancelled per round trip when a batch stops. @defaultValue 500 */
const STOP_CHUNK = 500;

const validatorId = (batchId: string): string => `${batchId}-validate`;
const finalizerId = (batchId: string): string => `${batchId}-final`;
const expiryId = (batchId: string): string => `${batchId}-expire`;

export interface BatchProcessorDependencies extends LineCheckerDependencies {
  /** Fail-fast client, for cancellation flags. */
  redis: RedisClient;
  /** A connection for BullMQ (commands wait for Redis instead of failing fast). */
  connection: RedisClient;
  keys: RedisKeys;
  store: BatchStore;
  files: FileStore;
  jobs: JobQueues;
  env: Pick<GatewayEnv, 'BATCH_MAX_LINES' | 'BATCH_EXPIRY_SECONDS'>;
  logger: Logger;
}

/** Error-file `errors.data` entry of a batch that failed as a whole. */
interface BatchError {
  code: string;
  message: string;
  line: number | null;
  param: string | null;
}

/**
 * The gateway queue's jobs. Validation reads a batch's input file: every valid line becomes a
 * generate job (at batch priority, below interactive requests) and all of them children of one
 * BullMQ flow whose parent, the finalizer, runs once every line has finished, on whichever
 * gateway replica takes it, and writes the output and error files. A malformed line goes to the
 * error file; it never fails the batch. Expiry stops whatever has not run by `expires_at`.
 */
export class BatchProcessor {
  readonly queue: Queue;
  private readonly flows: FlowProducer;
  private worker: Worker | undefined;
  private readonly processors: ProcessorMap<GatewayJob, Job, void> = {
    [GatewayJobName.ValidateBatch]: (item) => this.validate(item.data.batchId),
    [GatewayJobName.FinalizeBatch]: (item, job) => this.finalize(item.data.batchId, job),
    [GatewayJobName.ExpireBatch]: (item) => this.expire(item.data.batchId),
  };

  constructor(private readonly deps: BatchProcessorDependencies) {
    this.queue = new Queue(gatewayQueueName, queueOptions(deps.connection, deps.keys.prefix));
    this.flows = new FlowProducer({ connection: deps.connection, prefix: deps.keys.prefix });
  }

  /** Starts taking the gateway queue's jobs; fails when a job name has no processor. */
  start(): void {
    assertProcessorsCover(this.processors, Object.values(GatewayJobName), gatewayQueueName);
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
        // TypeScript cannot pair `item.name` with its own entry (calling a union of functions
        // needs an argument of all their types at once); the map's type pairs them.
        const processItem = this.processors[item.name] as (
          job: GatewayJob,
          context: Job,
        ) => Promise<void>;
        await processItem(item, job);
      },
      workerOptions(this.deps.connection, this.deps.keys.prefix, CONCURRENCY),
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

  /** Queues a new batch's validation, and its expiry after `BATCH_EXPIRY_SECONDS`. */
  async schedule(batchId: string): Promise<void> {
    await this.queue.add(
      GatewayJobName.ValidateBatch,
      { batchId },
      { jobId: validatorId(batchId) },
    );
    await this.queue.add(
      GatewayJobName.ExpireBatch,
      { batchId },
      { jobId: expiryId(batchId), delay: this.deps.env.BATCH_EXPIRY_SECONDS * 1000 },
    );
  }

  /** How many of a running batch's lines have finished, or undefined before its flow exists. */
  async finishedLines(
    batchId: string,
  ): Promise<{ processed: number; ignored: number } | undefined> {
    const parent = await Job.fromId(this.queue, finalizerId(batchId));
    if (parent === undefined) return undefined;
    const counts = await parent.getDependenciesCount({ processed: true, ignored: true });
    return { processed: counts.processed ?? 0, ignored: counts.ignored ?? 0 };
  }

  /** Cancels every line: queued ones are removed, running ones stop within one engine tick. */
  async stopLines(batchId: string): Promise<void> {
    const { redis, keys, jobs, store } = this.deps;
    const lines = await store.acceptedLines(batchId);
    for (let start = 0; start < lines.length; start += STOP_CHUNK) {
      const chunk = lines.slice(start, start + STOP_CHUNK);
      await requestCancels(
        redis,
        keys,
        chunk.map((line) => line.jobId),
      );
      // A line that is running (locked) is not removed: its worker stops it on the flag.
      await Promise.all(chunk.map((line) => jobs.queue(line.model).remove(line.jobId)));
    }
  }

  /** Reads the input file line by line: valid lines become the flow's children. */
  private async validate(batchId: string): Promise<void> {
    const { store, files, env } = this.deps;
    const record = await store.find(batchId);
    if (record?.status !== 'validating') return;
    const checker = new BatchLineChecker(this.deps, record);
    const children: FlowJobNode[] = [];
    const rejects: string[] = [];
    const accepted: [number, BatchLine][] = [];
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
      const checked = await checker.check(line);
      if (!checked.accepted) {
        rejects.push(checked.errorLine);
        continue;
      }
      const jobId = `${batchId}-${lineNumber}`;
      accepted.push([
        lineNumber,
        { customId: checked.customId, jobId, model: checked.payload.model },
      ]);
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
    await store.saveValidatedLines(batchId, { total, rejects, accepted });
    await this.flows.add({
      name: GatewayJobName.FinalizeBatch,
      queueName: gatewayQueueName,
      data: { batchId },
      opts: { jobId: finalizerId(batchId) },
      children,
    });
    await store.transition(batchId, 'in_progress');
    // A cancel or expiry that came while validating only recorded why; its lines exist now.
    const after = await store.find(batchId);
    if (after?.stop_reason !== undefined) await this.stopLines(batchId);
  }

  private async failValidation(batchId: string, error: BatchError): Promise<void> {
    await this.deps.store.transition(batchId, 'failed', { errors: JSON.stringify([error]) });
  }

  private async expire(batchId: string): Promise<void> {
    const { store } = this.deps;
    const record = await store.find(batchId);
    if (record === undefined || isTerminal(record.status) || record.stop_reason !== undefined)
      return;
    await store.setStopReason(batchId, 'expired');
    if (record.status === 'in_progress') await this.stopLines(batchId);
  }

  /** Runs when every line has finished: writes the output and error files. */
  private async finalize(batchId: string, parent: Job): Promise<void> {
    const { store, keys, files } = this.deps;
    const record = await store.find(batchId);
    if (record === undefined || isTerminal(record.status)) return;
    if (record.status === 'in_progress') await store.transition(batchId, 'finalizing');
    const stop = (await store.find(batchId))?.stop_reason;
    const joined = joinLines({
      record,
      prefix: keys.prefix,
      lines: await store.acceptedLines(batchId),
      values: await parent.getChildrenValues<unknown>(),
      failures: await parent.getIgnoredChildrenFailures(),
      rejects: await store.rejectedLines(batchId),
      stop,
    });
    const finishedAt = nowSeconds();
    const { outputFileId, errorFileId } = await writeBatchFiles(files, record, joined, finishedAt);
    await store.transition(
      batchId,
      stop ?? 'completed',
      {
        output_file_id: outputFileId,
        error_file_id: errorFileId,
        completed: joined.output.length,
        failed: joined.errors.length,
        usage: JSON.stringify(openAiBatchUsage(joined.usage)),
      },
      finishedAt,
    );
    await store.dropLines(batchId);
    await this.queue.remove(expiryId(batchId));
  }
}
