import type { RedisClient } from '#cluster';
import type { DigestResult, RedisKeys, ScoreResult, Usage } from '#contracts';
import {
  appendDone,
  appendFailed,
  appendStreamEvents,
  chargeTenantTokens,
  StreamBatcher,
  type CheckpointStore,
  type ProgressStreamEvent,
  type StoredResult,
} from '#cluster';
import type { SequenceEvent } from '#engine';
import type { ProgressReporter } from './progress-reporter.js';
import type { SharedPrefixes } from './sequence-start.js';

/** How one sequence's events are written: to which choice, sharing prefixes or not. */
export interface SequenceTarget {
  jobId: string;
  choice: number;
  prefixes: SharedPrefixes | undefined;
  progress: ProgressReporter;
  /** Generate sequences end their choice in the stream; score and digest end with the job. */
  endsChoice: boolean;
}

/**
 * Where a running sequence's events go: tokens and choice ends to the job's stream, states to
 * its checkpoints and to the prefix cache, progress to BullMQ. A job that may no longer write
 * (this worker lost its lock, or one of its sequences failed and the job will be retried) gets
 * nothing more written, so whoever runs it next is never disturbed.
 */
export class StreamSink {
  /** Tokens of all running sequences, written with one round trip per engine tick. */
  private readonly tokens: StreamBatcher;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly checkpoints: CheckpointStore,
    private readonly mayWrite: (jobId: string) => boolean,
  ) {
    this.tokens = new StreamBatcher(redis, keys, mayWrite);
  }

  async onEvent(target: SequenceTarget, event: SequenceEvent): Promise<void> {
    const { jobId, choice, prefixes, progress } = target;
    if (!this.mayWrite(jobId)) return;
    switch (event.type) {
      case 'token':
        await this.tokens.append(jobId, {
          type: 'token',
          choice,
          index: event.index,
          token: event.token,
          text: event.text,
          logprob: event.logprob,
          ...(event.top === undefined ? {} : { top: event.top }),
        });
        await progress.tokenGenerated();
        return;
      case 'checkpoint':
        // Ordered after the tokens sampled before it: the stream always holds more tokens than
        // the checkpoint absorbed, which is what makes a resume exact.
        await this.checkpoints.save(jobId, choice, {
          state: Buffer.from(event.state),
          position: event.position,
          absorbed: event.absorbed,
          ...(event.logprobs === undefined
            ? {}
            : { logprobs: event.logprobs, logprobsOffset: event.logprobsOffset ?? 0 }),
        });
        return;
      case 'prefix-state':
        await prefixes?.cache.store(event.hash, Buffer.from(event.state), prefixes.claimant.id);
        return;
      case 'progress':
        // Each prefill chunk brings a claimed prefix closer: the sequences waiting for it wait on.
        await prefixes?.cache.renewClaims(prefixes.claimant.id);
        await progress.prefill(event.done, event.total, async (done, total) => {
          await appendStreamEvents(this.redis, this.keys, jobId, [
            { type: 'progress', promptTokensDone: done, promptTokensTotal: total },
          ]);
        });
        return;
      case 'finished':
        if (target.endsChoice) {
          await appendStreamEvents(this.redis, this.keys, jobId, [
            {
              type: 'choice-end',
              choice,
              finishReason: event.finishReason,
              text: event.text,
              promptTokens: event.promptTokens,
              cachedTokens: event.cachedTokens,
            },
          ]);
        }
        return;
      case 'tokenized':
      case 'suspended':
      case 'failed':
        return;
    }
  }

  /**
   * Ends the given choices as cancelled before they ran (nothing of theirs was processed);
   * returns the entries it appended.
   */
  async endCancelledChoices(
    jobId: string,
    choices: readonly number[],
  ): Promise<ProgressStreamEvent[]> {
    const ends = choices.map((choice) => ({
      type: 'choice-end' as const,
      choice,
      finishReason: 'cancelled' as const,
      text: '',
      promptTokens: 0,
      cachedTokens: 0,
    }));
    await appendStreamEvents(this.redis, this.keys, jobId, ends);
    return ends;
  }

  /**
   * Ends the job's stream with its usage and result (readers need nothing else), charges the
   * tokens it used to its owner and drops its checkpoints. Returns where the result went.
   */
  async complete(
    jobId: string,
    choices: number,
    owner: string,
    usage: Usage,
    result?: ScoreResult | DigestResult,
  ): Promise<StoredResult> {
    if (!this.mayWrite(jobId)) throw new Error(`job ${jobId} may no longer write to its stream`);
    const stored = await appendDone(this.redis, this.keys, jobId, usage, result);
    await this.chargeAndClean(jobId, choices, owner, usage);
    return stored;
  }

  /**
   * Charges a finished job's tokens to its owner (once per job, however often this runs) and
   * drops its checkpoints: the last steps of `complete`, also taken by a retry that finds the
   * job's stream ended already.
   */
  async chargeAndClean(jobId: string, choices: number, owner: string, usage: Usage): Promise<void> {
    const tokens = usage.promptTokens + usage.completionTokens;
    await chargeTenantTokens(this.redis, this.keys, jobId, owner, tokens);
    await this.checkpoints.deleteJob(jobId, choices);
  }

  /** Ends the job's stream with a failure (only when BullMQ will not retry the job). */
  async fail(jobId: string, message: string): Promise<void> {
    await appendFailed(this.redis, this.keys, jobId, message);
  }
}
