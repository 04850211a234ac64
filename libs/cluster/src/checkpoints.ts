import type { Redis } from 'ioredis';
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
  /** Score jobs: log-probs of the tokens scored so far. */
  logprobs?: Float64Array;
}

/** Checkpoints outlive their job by at most this long if nobody cleans up. @defaultValue 7 days */
const CHECKPOINT_TTL_SECONDS = 7 * 24 * 3600;

export class CheckpointStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  async save(jobId: string, choice: number, checkpoint: Checkpoint): Promise<void> {
    const key = this.keys.checkpoint(jobId, choice);
    const meta: Record<string, string | Buffer> = {
      position: String(checkpoint.position),
      absorbed: String(checkpoint.absorbed),
    };
    if (checkpoint.logprobs !== undefined) {
      meta.logprobs = Buffer.from(
        checkpoint.logprobs.buffer,
        checkpoint.logprobs.byteOffset,
        checkpoint.logprobs.byteLength,
      );
    }
    // One transaction: a reader never sees a state with another checkpoint's metadata.
    await this.redis
      .multi()
      .set(key, checkpoint.state, 'EX', CHECKPOINT_TTL_SECONDS)
      .del(`${key}:meta`)
      .hset(`${key}:meta`, meta)
      .expire(`${key}:meta`, CHECKPOINT_TTL_SECONDS)
      .exec();
  }

  async load(jobId: string, choice: number): Promise<Checkpoint | undefined> {
    const key = this.keys.checkpoint(jobId, choice);
    const [[, state], [, meta]] = (await this.redis
      .multi()
      .getBuffer(key)
      .hgetallBuffer(`${key}:meta`)
      .exec()) as [[null, Buffer | null], [null, Record<string, Buffer>]];
    if (state === null) return undefined;
    const position = Number(meta.position?.toString());
    const absorbed = Number(meta.absorbed?.toString());
    if (!Number.isInteger(position) || !Number.isInteger(absorbed)) return undefined;
    const logprobsBytes = meta.logprobs;
    return {
      state,
      position,
      absorbed,
      ...(logprobsBytes === undefined
        ? {}
        : { logprobs: new Float64Array(new Uint8Array(logprobsBytes).buffer) }),
    };
  }

  async deleteJob(jobId: string, choices: number): Promise<void> {
    const keys = Array.from({ length: choices }, (_unused, choice) => [
      this.keys.checkpoint(jobId, choice),
      `${this.keys.checkpoint(jobId, choice)}:meta`,
    ]).flat();
    if (keys.length > 0) await this.redis.del(...keys);
  }
}
