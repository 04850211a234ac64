import { randomUUID } from 'node:crypto';
import type { GenerateResult, ModelJob } from '#contracts';
import { readStreamedChoices, type PrefixClaimant } from '#cluster';
import { checkpointPolicy, runTogether, type JobContext } from '../job-context.js';
import { toSamplingParams } from '../sampling.js';

type GenerateJob = Extract<ModelJob, { name: 'generate' }>;

/**
 * Samples `n` choices from one prompt (or a saved state). A resumed job replays the tokens its
 * stream already holds and skips choices that already ended; the result is read back from the
 * stream, the source of truth, not from this attempt's memory.
 */
export async function generate(
  { data: payload }: GenerateJob,
  context: JobContext,
): Promise<GenerateResult> {
  const { services, jobId, text, runtime, sequences, progress } = context;
  const { redis, keys, settings, sink, starter, logger } = services;
  const streamed = (await readStreamedChoices(redis, keys, jobId)).byChoice();
  const saved =
    payload.stateId === undefined
      ? undefined
      : await starter.loadOwnedState(payload.stateId, payload.owner, payload.model);
  const sampling = toSamplingParams(payload.sampling, jobId);
  const outcomes = await runTogether(
    context,
    Array.from({ length: payload.n }, async (_unused, choice) => {
      const already = streamed.get(choice);
      if (already?.end !== undefined) return undefined;
      const replay = (already?.tokens ?? []).map((event) => event.token);
      const sequenceId = `${jobId}:${choice}`;
      sequences.add(sequenceId);
      const claimant: PrefixClaimant = {
        id: `${sequenceId}:${randomUUID()}`,
        stopWaiting: () => context.stopWaiting(),
      };
      const prefixes = { cache: runtime.prefixCache, claimant };
      try {
        return await runtime.engine.run(
          {
            id: sequenceId,
            kind: 'generate',
            priority: context.priority,
            text,
            // A saved state's prefix hashes would not describe the tokens before it.
            prefixBlockTokens: saved === undefined ? settings.prefixBlockTokens : 0,
            generate: {
              sampling,
              choice,
              maxTokens: payload.sampling.max_tokens,
              stop: payload.sampling.stop,
            },
            checkpoint: checkpointPolicy(settings),
          },
          {
            start: (tokenized) =>
              starter.start(jobId, choice, tokenized, {
                replay,
                saved,
                prefixes,
                cancelIfRequested: context.cancelIfRequested,
              }),
            onEvent: (event) =>
              sink.onEvent({ jobId, choice, prefixes, progress, endsChoice: true }, event),
          },
        );
      } finally {
        // Claims still held (the sequence ended before reaching them) would expire anyway:
        // failing to give them back early must not fail the job.
        await runtime.prefixCache.releaseClaims(claimant.id).catch((error: unknown) => {
          logger.warn({ err: error, jobId }, 'prefix claims not released; they will expire');
        });
      }
    }),
  );
  await context.handBackIfSuspended(outcomes);
  const result = (await readStreamedChoices(redis, keys, jobId)).generateResult(
    payload.n,
    payload.sampling.logprobs !== undefined,
  );
  const { usage } = result;
  await sink.complete(jobId, payload.n, payload.owner, usage);
  return result;
}
