import { randomUUID } from 'node:crypto';
import type { DigestResult, ModelJob } from '#contracts';
import { saveState } from '#cluster';
import type { JobContext } from '../job-context.js';
import { runSingleSequence } from './single-sequence.js';

type DigestJob = Extract<ModelJob, { name: 'digest' }>;

/** Reads a text (on top of a saved state or from nothing) and keeps the resulting state. */
export async function digest(
  { data: payload }: DigestJob,
  context: JobContext,
): Promise<DigestResult> {
  const { services, jobId } = context;
  const { redis, keys, sink, starter } = services;
  const saved =
    payload.stateId === undefined
      ? undefined
      : await starter.loadOwnedState(payload.stateId, payload.owner, payload.model);
  const outcome = await runSingleSequence(context, { kind: 'digest', saved });
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
