import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { JobPriority, RedisKeys, WorkerRecord } from '#contracts';
import type { CheckpointStore, Logger, PrefixCache } from '#cluster';
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
  redis: Redis;
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
