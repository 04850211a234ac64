import type { RedisClient } from '#cluster';
import {
  JobName,
  jobResultSchemas,
  type GatewayJobRecord,
  type JobResult,
  type RedisKeys,
} from '#contracts';
import {
  doneResult,
  IncompleteStreamError,
  readStreamedChoices,
  type DoneEvent,
  type StreamedChoices,
} from '#cluster';
import { jobFailed } from '../common/api-error.js';

/**
 * A finished job's result, from its stream alone (BullMQ's return value is for the dashboard;
 * batches, whose lines outlive their streams, read their flow's values instead):
 * a generate job's choices are its token and choice-end entries (`collected` when the caller
 * already followed the stream, else read now); score and digest results travel in the `done`
 * entry, or under the key it names. A stream that lacks a choice's end is an error, not a stop.
 */
export async function resultFromStream<N extends JobName>(
  name: N,
  record: GatewayJobRecord,
  done: DoneEvent,
  source: { redis: RedisClient; keys: RedisKeys; jobId: string; collected?: StreamedChoices },
): Promise<JobResult<N>> {
  if (name === JobName.Generate) {
    const choices =
      source.collected ?? (await readStreamedChoices(source.redis, source.keys, source.jobId));
    try {
      // The usage the worker recorded (and charged) in `done`, as the streamed answer reports it.
      const result = choices.generateResult(record.choices, record.logprobs);
      return { ...result, usage: done.usage } as JobResult<N>;
    } catch (error) {
      if (error instanceof IncompleteStreamError) throw jobFailed(error.message);
      throw error;
    }
  }
  return jobResultSchemas[name].parse(await doneResult(source.redis, done)) as JobResult<N>;
}
