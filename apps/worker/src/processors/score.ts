import { UnrecoverableError } from 'bullmq';
import type { ModelJob, ScoreResult } from '#contracts';
import { summarizeScore } from '#engine';
import { checkpointPolicy, dashboardValue, isFinished, type JobContext } from '../job-context.js';

type ScoreJob = Extract<ModelJob, { name: 'score' }>;

/** Log-probabilities of every token of a text: total NLL, perplexity, windows. */
export async function score(
  { data: payload }: ScoreJob,
  context: JobContext,
): Promise<ScoreResult> {
  const { services, jobId, text, runtime, sequences, progress } = context;
  const { settings, sink, starter } = services;
  const sequenceId = `${jobId}:0`;
  sequences.add(sequenceId);
  const outcome = await runtime.engine.run(
    {
      id: sequenceId,
      kind: 'score',
      priority: context.priority,
      text,
      prefixBlockTokens: 0,
      score: { windowTokens: payload.windowTokens },
      checkpoint: checkpointPolicy(settings),
    },
    {
      start: (tokenized) =>
        starter.start(jobId, 0, tokenized, {
          replay: [],
          saved: undefined,
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
  const summary = summarizeScore(outcome.logprobs ?? new Float64Array(), payload.windowTokens);
  const result: ScoreResult = {
    ...summary,
    ...(payload.tokenLogprobs ? { tokenLogprobs: Array.from(outcome.logprobs ?? []) } : {}),
  };
  const stored = await sink.complete(
    jobId,
    1,
    payload.owner,
    { promptTokens: summary.tokens, completionTokens: 0, cachedTokens: 0 },
    result,
  );
  return dashboardValue(result, stored);
}
