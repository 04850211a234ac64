import type { ModelJob, ScoreResult } from '#contracts';
import { summarizeScore } from '#engine';
import { dashboardValue, type JobContext } from '../job-context.js';
import { runSingleSequence } from './single-sequence.js';

type ScoreJob = Extract<ModelJob, { name: 'score' }>;

/** Log-probabilities of every token of a text: total NLL, perplexity, windows. */
export async function score(
  { data: payload }: ScoreJob,
  context: JobContext,
): Promise<ScoreResult> {
  const { services, jobId } = context;
  const outcome = await runSingleSequence(context, {
    kind: 'score',
    score: { windowTokens: payload.windowTokens },
  });
  const summary = summarizeScore(outcome.logprobs ?? new Float64Array(), payload.windowTokens);
  const result: ScoreResult = {
    ...summary,
    ...(payload.tokenLogprobs ? { tokenLogprobs: Array.from(outcome.logprobs ?? []) } : {}),
  };
  const stored = await services.sink.complete(
    jobId,
    1,
    payload.owner,
    { promptTokens: summary.tokens, completionTokens: 0, cachedTokens: 0 },
    result,
  );
  return dashboardValue(result, stored);
}
