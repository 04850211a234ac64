import type { ModelConfig, Tokenizer } from '#model';
import type { OutputProcessor } from './output-processor.js';
import { prefixHashes } from './prefix-hashes.js';
import type { FinishReason, SequenceRequest, SequenceStart } from './protocol.js';
import { Sequence } from './sequence.js';
import { TokenList } from './token-list.js';

/** Tokenizes a request into a sequence that waits for its start. */
export function tokenizeSequence(
  request: SequenceRequest,
  tokenizer: Tokenizer,
  config: ModelConfig,
  stateSize: number,
): Sequence {
  const ids = tokenizer.encodeIds(request.text);
  // Scoring predicts every text token, the first from end-of-text; generation needs at least
  // one token to feed, and an empty prompt starts from end-of-text as Pythia's training did.
  const tokens =
    request.kind === 'score' || (request.kind === 'generate' && ids.length === 0)
      ? new TokenList(ids, tokenizer.eosTokenId)
      : new TokenList(ids);
  const prefixes = prefixHashes(config, tokens, request.prefixBlockTokens);
  return new Sequence(request, tokens, tokens.length, prefixes, stateSize);
}

/**
 * Puts a tokenized sequence where its start says (fresh, a checkpoint, a cached prefix or a saved
 * state) and moves it to prefill. Returns why it is finished instead when the start already
 * holds all of it (a resumed generation that had reached its end, a fully scored text); throws
 * when the start does not fit the sequence.
 */
export function applyStart(
  sequence: Sequence,
  start: SequenceStart,
  stateSize: number,
  output: OutputProcessor,
): FinishReason | undefined {
  const { request } = sequence;
  if (start.state !== undefined) {
    // A copy: the sequence's state is written in place from now on, and the caller's buffer
    // (a checkpoint, a cached prefix, a saved state) may be read or reused after this.
    const state = new Float32Array(start.state.slice(0));
    if (state.length !== stateSize) {
      throw new Error(`start state has ${state.length} floats, the model needs ${stateSize}`);
    }
    sequence.state = state;
  }
  if (request.kind === 'generate') {
    const options = request.generate;
    if (options === undefined) throw new Error('a generate sequence needs generate options');
    sequence.generate = output.startGeneration(sequence, options, start.replay);
  } else if (start.replay.length > 0) {
    throw new Error(`a ${request.kind} sequence has no generated tokens to replay`);
  }
  if (start.skip < 0 || start.skip > sequence.tokens.length) {
    throw new Error(`start skips ${start.skip} of ${sequence.tokens.length} tokens`);
  }
  sequence.absorbed = start.skip;
  sequence.position = start.position;
  sequence.cachedTokens = Math.min(start.skip, sequence.inputCount);
  if (request.kind === 'score') {
    const logprobs = new Float64Array(Math.max(0, sequence.tokens.length - 1));
    if (start.priorLogprobs !== undefined) {
      logprobs.set(start.priorLogprobs.subarray(0, start.skip));
    }
    sequence.logprobs = logprobs;
  }
  const replayedToTheEnd =
    sequence.generate === undefined ? undefined : output.finishReasonOf(sequence.generate);
  if (replayedToTheEnd !== undefined) return replayedToTheEnd;
  if (sequence.absorbed >= sequence.feedEnd) {
    if (request.kind !== 'generate') return 'stop';
    throw new Error('a generate sequence needs at least one token to process after its start');
  }
  sequence.phase = sequence.absorbed < sequence.prefillEnd ? 'prefill' : 'decode';
  return undefined;
}
