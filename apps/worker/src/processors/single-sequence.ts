import { UnrecoverableError } from 'bullmq';
import type { ScoreOptions, SequenceOutcome } from '#engine';
import { checkpointPolicy, isFinished, type JobContext } from '../job-context.js';
import type { SavedStart } from '../sequence-start.js';

/** What a score or digest job asks of its one sequence. */
export type SingleSequence =
  { kind: 'score'; score: ScoreOptions } | { kind: 'digest'; saved: SavedStart | undefined };

/**
 * Runs the one sequence of a score or digest job over its text, from its checkpoint or (digest)
 * a saved state, and returns how it finished; a job stopped for shutdown is handed back, one
 * cancelled fails without retry (it has no partial result).
 */
export async function runSingleSequence(
  context: JobContext,
  sequence: SingleSequence,
): Promise<Extract<SequenceOutcome, { type: 'finished' }>> {
  const { services, jobId, text, runtime, sequences, progress } = context;
  const { settings, sink, starter } = services;
  const sequenceId = `${jobId}:0`;
  sequences.add(sequenceId);
  const outcome = await runtime.engine.run(
    {
      id: sequenceId,
      kind: sequence.kind,
      priority: context.priority,
      text,
      prefixBlockTokens: 0,
      ...(sequence.kind === 'score' ? { score: sequence.score } : {}),
      checkpoint: checkpointPolicy(settings),
    },
    {
      start: (tokenized) =>
        starter.start(jobId, 0, tokenized, {
          replay: [],
          saved: sequence.kind === 'digest' ? sequence.saved : undefined,
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
  return outcome;
}
