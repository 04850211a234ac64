import { randomUUID } from 'node:crypto';
import { UnrecoverableError } from 'bullmq';
import type { DigestResult, ModelJob } from '#contracts';
import { saveState } from '#cluster';
import { checkpointPolicy, isFinished, type JobContext } from '../job-context.js';

type DigestJob = Extract<ModelJob, { name: 'digest' }>;

/** Reads a text (on top of a saved state or from nothing) and keeps the resulting state. */
export async function digest(
  { data: payload }: DigestJob,
  context: JobContext,
): Promise<DigestResult> {
  const { services, jobId, text, runtime, sequences, progress } = context;
  const { redis, keys, settings, sink, starter } = services;
  const saved =
    payload.stateId === undefined
      ? undefined
      : await starter.loadOwnedState(payload.stateId, payload.owner, payload.model);
  const sequenceId = `${jobId}:0`;
  sequences.add(sequenceId);
  const outcome = await runtime.engine.run(
    {
      id: sequenceId,
      kind: 'digest',
      priority: context.priority,
      text,
      prefixBlockTokens: 0,
      checkpoint: checkpointPolicy(settings),
    },
    {
      start: (tokenized) =>
        starter.start(jobId, 0, tokenized, {
          replay: [],
          saved,
          prefixes: undefined,
          cancelIfRequested: context.cancelIfRequested,
        }),
      onEvent: (event) =>
        sink.onEvent({ jobId, choice: 0, prefixes: undefined, progress, endsChoice: false }, event),
    },
  );
  await context.handBackIfSuspended([outcome]);
  if (!isFinished(outcome)) throw new Error('unreachable: suspended outcome handed back');
  if (outcome.finishReason === 'cancelled') throw new UnrecoverableError('cancelled by request');
  if (outcome.state === undefined) throw new Error('the engine returned no state');
  const stateId = `state_${randomUUID().replaceAll('-', '')}`;
  const now = new Date();
  const expiresAt = new Date(now.getTime() + payload.stateTtlSeconds * 1000).toISOString();
  await saveState(
    redis,
    keys,
    stateId,
    Buffer.from(outcome.state),
    {
      model: payload.model,
      owner: payload.owner,
      position: outcome.position,
      createdAt: now.toISOString(),
      expiresAt,
    },
    payload.stateTtlSeconds,
  );
  const result: DigestResult = {
    stateId,
    model: payload.model,
    position: outcome.position,
    expiresAt,
  };
  await sink.complete(
    jobId,
    1,
    payload.owner,
    { promptTokens: outcome.promptTokens, completionTokens: 0, cachedTokens: outcome.cachedTokens },
    result,
  );
  return result;
}
