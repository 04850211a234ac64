import { createHash } from 'node:crypto';
import type { JobPayload } from '#contracts';
import type { SamplingParams } from '#engine';

/** A generate job's sampling fields (OpenAI's names) as the engine's sampler takes them. */
export function toSamplingParams(
  sampling: JobPayload<'generate'>['sampling'],
  jobId: string,
): SamplingParams {
  return {
    temperature: sampling.temperature,
    topP: sampling.top_p,
    topK: sampling.top_k,
    minP: sampling.min_p,
    presencePenalty: sampling.presence_penalty,
    frequencyPenalty: sampling.frequency_penalty,
    repetitionPenalty: sampling.repetition_penalty,
    logitBias: new Map(
      Object.entries(sampling.logit_bias).map(([token, bias]) => [Number(token), bias]),
    ),
    topLogprobs: sampling.logprobs,
    // Without a seed the job still needs a fixed one, or a resumed job would diverge: derive it
    // from the job id, which every worker that runs the job agrees on.
    seed: sampling.seed ?? createHash('sha256').update(jobId).digest().readUInt32BE(0),
  };
}
