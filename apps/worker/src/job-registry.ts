import { UnrecoverableError, WaitingError, type Job } from 'bullmq';
import type { RedisClient } from '#cluster';
import {
  assertProcessorsCover,
  InvalidJobError,
  JobName,
  jobPriorityOf,
  jobResultSchemas,
  parseModelJob,
  type JobResult,
  type ModelJob,
  type ProcessorMap,
  type RedisKeys,
  type TextSource,
  type WorkerRecord,
} from '#contracts';
import {
  doneResult,
  isCancelRequested,
  readStreamedChoices,
  readStreamEnd,
  type CheckpointStore,
  type DoneEvent,
  type FailedEvent,
  type Logger,
} from '#cluster';
import type { Engine, SequenceOutcome } from '#engine';
import {
  dashboardValue,
  type JobContext,
  type JobSettings,
  type ModelRuntime,
  type WorkerServices,
} from './job-context.js';
import { digest } from './processors/digest.js';
import { generate } from './processors/generate.js';
import { score } from './processors/score.js';
import { ProgressReporter } from './progress-reporter.js';
import { SequenceStarter } from './sequence-start.js';
import { StreamSink } from './stream-sink.js';

/** One processor per model job name: a name without one does not compile. */
const processors: ProcessorMap<ModelJob, JobContext, JobResult<JobName>> = {
  [JobName.Generate]: generate,
  [JobName.Score]: score,
  [JobName.Digest]: digest,
};

/** A job this worker is running: its engine sequences, for cancellation and suspension. */
interface RunningJob {
  engine: Engine;
  sequences: Set<string>;
  cancelled: boolean;
  /** BullMQ's lock on this run of the job. */
  lockToken: string | undefined;
}

/**
 * The worker's jobs: validates each job again (the gateway is not the only producer), hands it
 * to its processor, and keeps what cancellation, lost locks and shutdown need to reach its
 * sequences. Processors resume from checkpoints and the job's stream, stream every token, and
 * hand the job back to the queue when the worker shuts down.
 */
export class JobRegistry {
  private readonly running = new Map<string, RunningJob>();
  private draining = false;
  /** Jobs whose lock this worker lost (another worker owns them now): write nothing more. */
  private readonly abandoned = new Set<string>();
  /** Jobs with a failed sequence: their other sequences stop and write nothing more. */
  private readonly stopped = new Set<string>();
  /** Jobs running when the Redis connection dropped: they write nothing more. */
  private readonly halted = new Set<string>();
  private readonly services: WorkerServices;

  constructor(
    redis: RedisClient,
    keys: RedisKeys,
    checkpoints: CheckpointStore,
    settings: JobSettings,
    worker: Pick<WorkerRecord, 'id' | 'host' | 'pid'>,
    logger: Logger,
  ) {
    assertProcessorsCover(processors, Object.values(JobName), 'worker');
    this.services = {
      redis,
      keys,
      checkpoints,
      settings,
      worker,
      logger,
      sink: new StreamSink(
        redis,
        keys,
        checkpoints,
        (jobId) =>
          !this.abandoned.has(jobId) && !this.stopped.has(jobId) && !this.halted.has(jobId),
      ),
      starter: new SequenceStarter(redis, keys, checkpoints),
    };
  }

  get activeJobs(): number {
    return this.running.size;
  }

  /** Stops the job's sequences within one engine tick; they finish as cancelled. */
  cancel(jobId: string): void {
    const entry = this.running.get(jobId);
    if (entry === undefined) return;
    // Sequences submitted after this moment are cancelled as they start (cancelIfRequested).
    entry.cancelled = true;
    for (const sequence of entry.sequences) entry.engine.cancel(sequence);
  }

  /**
   * BullMQ could not renew these jobs' locks: they were given to another worker (this one was
   * cut off, or stalled). Stop their sequences and write nothing more for them — no tokens,
   * checkpoints or completion — so the new owner's work is never disturbed.
   *
   * The failure may concern an earlier run of a job this worker has taken again: a renewal
   * sent before the job was handed back waits out a Redis outage, then fails because the
   * hand-back released that lock. BullMQ names only the job, so the lock (`lockKeyOf`) is read:
   * a run whose token still holds it goes on.
   */
  async abandon(jobIds: readonly string[], lockKeyOf: (jobId: string) => string): Promise<void> {
    for (const jobId of jobIds) {
      const entry = this.running.get(jobId);
      if (entry === undefined || this.abandoned.has(jobId)) continue;
      const holder = await this.services.redis.get(lockKeyOf(jobId));
      if (this.running.get(jobId) !== entry || this.abandoned.has(jobId)) continue;
      if (holder === entry.lockToken) continue;
      this.abandoned.add(jobId);
      for (const sequence of entry.sequences) entry.engine.cancel(sequence);
      this.services.logger.warn(
        { jobId },
        'lost the job lock to another worker; abandoning the job',
      );
    }
  }

  /** Shutdown: checkpoint every running sequence and hand its job back to the queue. */
  suspendAll(): void {
    this.draining = true;
    this.suspendRunning();
  }

  /**
   * The connection that writes tokens and checkpoints dropped. Redis may lose writes it had
   * acknowledged, and nothing tells which: a replica promoted by Sentinel lacks what the old
   * primary had not yet copied to it (replication is asynchronous), a restarted Redis what its
   * append-only file had not yet flushed. So the running jobs write nothing more from this
   * moment (only the commands already in flight are sent again after the reconnection), their
   * sequences are suspended and the jobs handed back once Redis answers again, to resume from
   * what it holds: the stream's gap-free run of tokens replayed, the rest sampled again from the
   * seed (the same tokens), a checkpoint used only when the stream holds every token it absorbed.
   * A choice that ended in the engine meanwhile has no end entry in the stream: its job fails
   * this attempt and its retry resumes the same way.
   */
  haltAfterConnectionLoss(): void {
    // Called again at each failed reconnection attempt: only jobs not yet halted are news.
    const newlyHalted = [...this.running.keys()].filter((jobId) => !this.halted.has(jobId));
    if (newlyHalted.length === 0) return;
    this.services.logger.warn(
      { jobIds: newlyHalted },
      'Redis connection lost: running jobs stop writing and go back to the queue to resume',
    );
    for (const jobId of newlyHalted) this.halted.add(jobId);
    this.suspendRunning();
  }

  private suspendRunning(): void {
    for (const { engine, sequences } of this.running.values()) {
      for (const sequence of sequences) engine.suspend(sequence);
    }
  }

  /** Runs one job; `lockToken` is BullMQ's lock on it, needed to hand it back. */
  async process(job: Job, lockToken: string | undefined, runtime: ModelRuntime): Promise<unknown> {
    const jobId = job.id;
    if (jobId === undefined) throw new UnrecoverableError('job has no id');
    if (this.draining) return this.handBack(job, lockToken);
    const item = parseOrRefuse(job);
    const entry: RunningJob = {
      engine: runtime.engine,
      sequences: new Set(),
      cancelled: false,
      lockToken,
    };
    this.running.set(jobId, entry);
    const progress = new ProgressReporter(job, this.services.worker);
    const stopSequences = (): void => {
      this.stopped.add(jobId);
      for (const sequence of entry.sequences) entry.engine.cancel(sequence);
    };
    try {
      const ending = await readStreamEnd(this.services.redis, this.services.keys, jobId);
      if (ending !== undefined) return await this.finishEnded(jobId, item, ending.event);
      if (await isCancelRequested(this.services.redis, this.services.keys, jobId)) {
        return await this.finishCancelledBeforeStart(jobId, item);
      }
      await progress.report('prefill', 0, 0, 0, true);
      const context: JobContext = {
        services: this.services,
        job,
        jobId,
        text: await this.readText(item.data.input),
        runtime,
        priority: jobPriorityOf(job.opts.priority),
        sequences: entry.sequences,
        progress,
        stopWaiting: () => this.draining || this.abandoned.has(jobId) || entry.cancelled,
        stopSequences,
        cancelIfRequested: (sequenceId) => {
          if (entry.cancelled) entry.engine.cancel(sequenceId);
        },
        handBackIfSuspended: async (outcomes: readonly (SequenceOutcome | undefined)[]) => {
          if (outcomes.some((outcome) => outcome?.type === 'suspended')) {
            await this.handBack(job, lockToken);
          }
        },
      };
      return await dispatch(item, context);
    } catch (error) {
      if (error instanceof WaitingError || this.abandoned.has(jobId)) throw error;
      // Whatever failed, nothing of this attempt may run on or write once it is over.
      stopSequences();
      // Readers stop at a `failed` event, so it is written only when BullMQ will not retry.
      const finalAttempt =
        error instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      if (!finalAttempt) throw error;
      const message = error instanceof Error ? error.message : String(error);
      await this.services.sink.fail(jobId, message).catch((streamError: unknown) => {
        this.services.logger.warn(
          { err: streamError, jobId },
          'could not append the failure event',
        );
      });
      throw error;
    } finally {
      this.running.delete(jobId);
      this.abandoned.delete(jobId);
      this.stopped.delete(jobId);
      this.halted.delete(jobId);
    }
  }

  /**
   * A job cancelled while it waited: a generate job completes with the choices that had not
   * ended cancelled (as one cancelled while running does), keeping what an earlier attempt
   * streamed and charging for it; score and digest jobs fail, having no partial result.
   */
  private async finishCancelledBeforeStart(
    jobId: string,
    item: ModelJob,
  ): Promise<JobResult<'generate'>> {
    if (item.name !== JobName.Generate) throw new UnrecoverableError('cancelled by request');
    const { n, owner, sampling } = item.data;
    const { redis, keys, sink } = this.services;
    const streamed = await readStreamedChoices(redis, keys, jobId);
    const ended = streamed.byChoice();
    const unended = Array.from({ length: n }, (_unused, choice) => choice).filter(
      (choice) => ended.get(choice)?.end === undefined,
    );
    for (const end of await sink.endCancelledChoices(jobId, unended)) streamed.add(end);
    const result = streamed.generateResult(n, sampling.logprobs !== undefined);
    await sink.complete(jobId, n, owner, result.usage);
    return result;
  }

  /**
   * A job whose stream has ended already: an earlier attempt finished it and died before BullMQ
   * recorded that. It is not run again; its tokens are charged (once per job, whichever attempt
   * gets there) and its checkpoints dropped, and BullMQ gets the result the stream holds.
   */
  private async finishEnded(
    jobId: string,
    item: ModelJob,
    ending: DoneEvent | FailedEvent,
  ): Promise<JobResult<JobName>> {
    if (ending.type === 'failed') {
      throw new UnrecoverableError(`the job failed before: ${ending.message}`);
    }
    const { redis, keys, sink } = this.services;
    const choices = item.name === JobName.Generate ? item.data.n : 1;
    await sink.chargeAndClean(jobId, choices, item.data.owner, ending.usage);
    if (item.name === JobName.Generate) {
      const streamed = await readStreamedChoices(redis, keys, jobId);
      const result = streamed.generateResult(choices, item.data.sampling.logprobs !== undefined);
      return { ...result, usage: ending.usage };
    }
    const result = jobResultSchemas[item.name].parse(await doneResult(redis, ending));
    return dashboardValue(result, ending.resultKey === undefined ? 'inline' : 'key');
  }

  /** Puts the job back in its queue (the worker is stopping); another worker resumes it. */
  private async handBack(job: Job, lockToken: string | undefined): Promise<never> {
    if (lockToken === undefined) throw new Error('cannot hand a job back without its lock token');
    await job.moveToWait(lockToken);
    this.services.logger.info({ jobId: job.id }, 'job handed back to the queue');
    throw new WaitingError();
  }

  private async readText(source: TextSource): Promise<string> {
    if ('text' in source) return source.text;
    const text = await this.services.redis.get(this.services.keys.document(source.documentId));
    if (text === null) throw new UnrecoverableError(`document ${source.documentId} does not exist`);
    return text;
  }
}

/** The job as one of the model jobs, or a refusal BullMQ will not retry. */
function parseOrRefuse(job: Job): ModelJob {
  try {
    return parseModelJob(job.name, job.data);
  } catch (error) {
    if (error instanceof InvalidJobError) throw new UnrecoverableError(error.message);
    throw error;
  }
}

/**
 * Runs the job's processor. TypeScript cannot relate `processors[item.name]` to `item`'s own
 * member of the union, so the pairing, which the map's type guarantees, is restated here.
 */
function dispatch(item: ModelJob, context: JobContext): Promise<JobResult<JobName>> {
  const processor = processors[item.name] as (
    job: ModelJob,
    context: JobContext,
  ) => Promise<JobResult<JobName>>;
  return processor(item, context);
}
