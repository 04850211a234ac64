import type { RedisClient } from './redis.js';
import type { RedisKeys } from '#contracts';

/**
 * Checkpoints of running jobs (DESIGN.md decision 5): each choice's recurrent state is a binary
 * value at its own key, never inside BullMQ's JSON job data, with a small metadata hash beside it
 * (position, tokens absorbed, and for scoring the log-probs so far as binary float64).
 */
export interface Checkpoint {
  state: Buffer;
  /** Absolute position of the next token. */
  position: number;
  /** Tokens of the logical sequence (input then generated) held by the state. */
  absorbed: number;
  /** Score jobs: log-probs of the tokens scored so far (on save: those from `logprobsOffset`). */
  logprobs?: Float64Array;
  logprobsOffset?: number;
}

/** Checkpoints outlive their job by at most this long if nobody cleans up. @defaultValue 7 days */
const CHECKPOINT_TTL_SECONDS = 7 * 24 * 3600;

export class CheckpointStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
  ) {}

  async save(jobId: string, choice: number, checkpoint: Checkpoint): Promise<void> {
    const metaKey = this.keys.checkpointMeta(jobId, choice);
    const logprobsKey = this.keys.checkpointLogprobs(jobId, choice);
    // One transaction: a reader never sees a state with another checkpoint's metadata.
    const transaction = this.redis
      .multi()
      .set(this.keys.checkpoint(jobId, choice), checkpoint.state, 'EX', CHECKPOINT_TTL_SECONDS)
      .hset(metaKey, {
        position: String(checkpoint.position),
        absorbed: String(checkpoint.absorbed),
      })
      .expire(metaKey, CHECKPOINT_TTL_SECONDS);
    if (checkpoint.logprobs !== undefined) {
      // Only the new log-probs travel: written in place at their offset, so a long document's
      // checkpoints cost O(new tokens), not O(document) each.
      const bytes = Buffer.from(
        checkpoint.logprobs.buffer,
        checkpoint.logprobs.byteOffset,
        checkpoint.logprobs.byteLength,
      );
      transaction
        .setrange(logprobsKey, (checkpoint.logprobsOffset ?? 0) * 8, bytes)
        .expire(logprobsKey, CHECKPOINT_TTL_SECONDS);
    }
    await transaction.exec();
  }

  async load(jobId: string, choice: number): Promise<Checkpoint | undefined> {
    const [[, state], [, meta], [, logprobsBytes]] = (await this.redis
      .multi()
      .getBuffer(this.keys.checkpoint(jobId, choice))
      .hgetall(this.keys.checkpointMeta(jobId, choice))
      .getBuffer(this.keys.checkpointLogprobs(jobId, choice))
      .exec()) as [[null, Buffer | null], [null, Record<string, string>], [null, Buffer | null]];
    if (state === null) return undefined;
    const position = Number(meta.position);
    const absorbed = Number(meta.absorbed);
    if (!Number.isInteger(position) || !Number.isInteger(absorbed)) return undefined;
    return {
      state,
      position,
      absorbed,
      ...(logprobsBytes === null
        ? {}
        : {
            logprobs: new Float64Array(new Uint8Array(logprobsBytes).buffer).subarray(0, absorbed),
          }),
    };
  }

  async deleteJob(jobId: string, choices: number): Promise<void> {
    const keys = Array.from({ length: choices }, (_unused, choice) => [
      this.keys.checkpoint(jobId, choice),
      this.keys.checkpointMeta(jobId, choice),
      this.keys.checkpointLogprobs(jobId, choice),
    ]).flat();
    if (keys.length > 0) await this.redis.del(...keys);
  }
}
