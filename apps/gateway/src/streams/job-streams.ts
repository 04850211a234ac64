import type { RedisClient } from '#cluster';
import type { GatewayJobRecord, JobName, JobResult, RedisKeys } from '#contracts';
import { readStreamEnd, type DoneEvent, type StreamEntry, type StreamedChoices } from '#cluster';
import { resultFromStream } from './job-results.js';
import {
  followJobStream,
  readStreamUntil,
  type BlockingReaders,
  type FollowOptions,
} from './job-stream-reader.js';

/** How a job's stream ended: its last entry, when that is `done` or `failed`. */
export type StreamEnd = NonNullable<Awaited<ReturnType<typeof readStreamEnd>>>;

/**
 * Jobs' token streams as the routes read them: followed live (each reader on its own blocking
 * connection), read up to a resume point, their ending, and the result they carry.
 */
export class JobStreams {
  constructor(
    private readonly redis: RedisClient,
    private readonly readers: BlockingReaders,
    private readonly keys: RedisKeys,
  ) {}

  /** Follows the stream until `done` or `failed` (see {@link followJobStream}). */
  follow(jobId: string, options: FollowOptions): AsyncGenerator<StreamEntry> {
    return followJobStream(this.readers, this.keys, jobId, options);
  }

  /** The entries up to and including `lastId` (see {@link readStreamUntil}). */
  async readUntil(jobId: string, lastId: string, seen: Set<string>): Promise<StreamEntry[]> {
    return readStreamUntil(this.redis, this.keys, jobId, lastId, seen);
  }

  /** The stream's `done` or `failed` entry, or undefined while the job runs. */
  async end(jobId: string): Promise<StreamEnd | undefined> {
    return readStreamEnd(this.redis, this.keys, jobId);
  }

  /** A finished job's result (see {@link resultFromStream}). */
  async result<N extends JobName>(
    name: N,
    record: GatewayJobRecord,
    done: DoneEvent,
    jobId: string,
    collected?: StreamedChoices,
  ): Promise<JobResult<N>> {
    return resultFromStream(name, record, done, {
      redis: this.redis,
      keys: this.keys,
      jobId,
      ...(collected === undefined ? {} : { collected }),
    });
  }
}
