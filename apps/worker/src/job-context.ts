import type { Job } from 'bullmq';
import type { RedisClient } from '#cluster';
import type { DigestResult, JobPriority, RedisKeys, ScoreResult, WorkerRecord } from '#contracts';
import type { CheckpointStore, Logger, PrefixCache, StoredResult } from '#cluster';
import type { CheckpointPolicy, Engine, SequenceOutcome } from '#engine';
import type { ProgressReporter } from './progress-reporter.js';
import type { SequenceStarter } from './sequence-start.js';
import type { StreamSink } from './stream-sink.js';

/** How a worker checkpoints and shares prefixes (from its environment, see libs/config). */
export interface JobSettings {
  checkpointEveryTokens: number;
  checkpointEveryMs: number;
  checkpointPrefillEveryTokens: number;
  prefixBlockTokens: number;
}

/** One served model: its engine and its share of the cluster's prefix cache. */
export interface ModelRuntime {
  engine: Engine;
  prefixCache: PrefixCache;
}

/** What the worker shares among all its jobs. */
export interface WorkerServices {
  redis: RedisClient;
  keys: RedisKeys;
  checkpoints: CheckpointStore;
  settings: JobSettings;
  worker: Pick<WorkerRecord, 'id' | 'host' | 'pid'>;
  logger: Logger;
  sink: StreamSink;
  starter: SequenceStarter;
}

/** What a processor needs to run one job. */
export interface JobContext {
  services: WorkerServices;
  job: Job;
  jobId: string;
  /** The job's input text, read from the payload or from its uploaded document. */
  text: string;
  runtime: ModelRuntime;
  /** The job's place on the cluster's priority scale; its sequences run at it. */
  priority: JobPriority;
  /** Engine sequence ids of this job (for cancellation and suspension); processors add theirs. */
  sequences: Set<string>;
  progress: ProgressReporter;
  /** True once a sequence of this job should stop waiting: cancelled, abandoned or draining. */
  stopWaiting: () => boolean;
  /** Stops the sequence at its first tick when the job was cancelled before it started. */
  cancelIfRequested: (sequenceId: string) => void;
  /**
   * Stops every sequence of the job and lets none of them write anything more: one of them
   * failed, and the job as a whole fails or is retried.
   */
  stopSequences: () => void;
  /** Hands the job back to the queue when any of its sequences was suspended (shutdown). */
  handBackIfSuspended: (outcomes: readonly (SequenceOutcome | undefined)[]) => Promise<void>;
}

export function checkpointPolicy(settings: JobSettings): CheckpointPolicy {
  return {
    everyTokens: settings.checkpointEveryTokens,
    everyMs: settings.checkpointEveryMs,
    prefillEveryTokens: settings.checkpointPrefillEveryTokens,
  };
}

export function isFinished(
  outcome: SequenceOutcome | undefined,
): outcome is Extract<SequenceOutcome, { type: 'finished' }> {
  return outcome?.type === 'finished';
}

/**
 * Runs a job's sequences together. When one fails, the others are stopped (they must not write:
 * the job fails or is retried as a whole, and a retry resumes from what the stream holds) and
 * awaited, so none still runs when the failure is rethrown.
 */
export async function runTogether<T>(
  context: JobContext,
  runs: readonly Promise<T>[],
): Promise<T[]> {
  const settled = await Promise.allSettled(
    runs.map((run) =>
      run.catch((error: unknown) => {
        context.stopSequences();
        throw error;
      }),
    ),
  );
  const values: T[] = [];
  for (const outcome of settled) {
    if (outcome.status === 'rejected') {
      const reason: unknown = outcome.reason;
      throw reason;
    }
    values.push(outcome.value);
  }
  return values;
}

/**
 * What BullMQ keeps as the job's return value, for the dashboard: the result, less a large
 * score's per-token log-probs, which live under the stream's result key only (not twice).
 */
export function dashboardValue<R extends ScoreResult | DigestResult>(
  result: R,
  stored: StoredResult,
): R {
  return stored === 'key' && 'tokenLogprobs' in result
    ? { ...result, tokenLogprobs: undefined }
    : result;
}
