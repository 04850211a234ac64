import type { CheckpointEvent } from './protocol.js';
import type { Sequence } from './sequence.js';

/**
 * Whether the sequence's state is due for a checkpoint: while decoding after `everyTokens`
 * tokens, while prefilling (at a chunk boundary) after `prefillEveryTokens` tokens, and in both
 * after `everyMs`.
 */
export function checkpointDue(sequence: Sequence, now: number): boolean {
  const policy = sequence.checkpointPolicy;
  const tokenLimit = sequence.phase === 'prefill' ? policy.prefillEveryTokens : policy.everyTokens;
  return (
    sequence.sinceCheckpoint.tokens >= tokenLimit ||
    now - sequence.sinceCheckpoint.at >= policy.everyMs
  );
}

/**
 * Whether a generation's state is checkpointed at its prompt's end, before its first token. Only
 * a prompt absorbed from its own start in one chunk no longer than the smallest chunk is
 * prefilled in the same chunks by any engine whatever its load. A longer prompt's chunks follow
 * the prefill budget (what else was running), a cached prefix's state was chunked by whoever
 * computed it; chunked another way a state differs in its last bits, and a resume that prefilled
 * the prompt again could sample a near-tie differently. From this checkpoint a resumed generation
 * replays only decode steps, which give the same bits whatever the batch.
 */
export function promptEndCheckpointDue(
  sequence: Sequence,
  lastChunk: number,
  minPrefillChunk: number,
): boolean {
  return sequence.promptChunks > 1 || lastChunk > minPrefillChunk || sequence.cachedTokens > 0;
}

/**
 * A checkpoint of the sequence as it is now, restarting its checkpoint counters. Score
 * checkpoints carry only the log-probs that no earlier checkpoint carried.
 */
export function takeCheckpoint(sequence: Sequence, now: number): CheckpointEvent {
  sequence.sinceCheckpoint = { tokens: 0, at: now };
  const logprobsOffset = sequence.logprobsCheckpointed;
  sequence.logprobsCheckpointed = sequence.absorbed;
  return {
    type: 'checkpoint',
    id: sequence.request.id,
    state: sequence.state.slice().buffer,
    position: sequence.position,
    absorbed: sequence.absorbed,
    ...(sequence.logprobs === undefined
      ? {}
      : { logprobs: sequence.logprobs.slice(logprobsOffset, sequence.absorbed), logprobsOffset }),
  };
}
