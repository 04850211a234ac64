import type { Tokenizer } from '#model';
import type { FinishedEvent, FinishReason, GenerateOptions, TokenEvent } from './protocol.js';
import { TokenSampler } from './sampler.js';
import type { GenerateState, Sequence } from './sequence.js';
import { StopStringFilter } from './stop-strings.js';

/** What one sampling step produced: the token to stream, and why the sequence ends, if it does. */
export interface SampleOutcome {
  /** Absent when the model chose end of text (which is not streamed). */
  token: TokenEvent | undefined;
  finishReason: FinishReason | undefined;
}

/**
 * Turns logits into output for generating sequences: sampling, detokenizing (UTF-8 completion),
 * stop strings, and the final event with the text held back until the end. The scheduler decides
 * which sequences run; this decides what they say.
 */
export class OutputProcessor {
  constructor(private readonly tokenizer: Tokenizer) {}

  /**
   * The generation state of a sequence whose earlier run already streamed `replay`: those tokens
   * go through the sampler, decoder and stop filter and onto the token list, never re-sampled.
   */
  startGeneration(
    sequence: Sequence,
    options: GenerateOptions,
    replay: readonly number[],
  ): GenerateState {
    const sampler = new TokenSampler(options.sampling, options.choice, sequence.tokens);
    const generate: GenerateState = {
      sampler,
      decoder: this.tokenizer.createDecodeStream(),
      stopFilter: new StopStringFilter(options.stop),
      maxTokens: options.maxTokens,
      generated: 0,
      pending: -1,
    };
    for (const token of replay) {
      sampler.accept(token);
      generate.stopFilter.push(generate.decoder.push(token));
      sequence.tokens.push(token);
      generate.generated += 1;
    }
    return generate;
  }

  /** Why the generation is over already: a stop string was seen, or the token budget is spent. */
  finishReasonOf(generate: GenerateState): FinishReason | undefined {
    if (generate.stopFilter.stoppedBy !== undefined) return 'stop';
    if (generate.generated >= generate.maxTokens) return 'length';
    return undefined;
  }

  /** Samples the sequence's next token from `logits` and releases the text it completes. */
  sample(sequence: Sequence, logits: Float32Array, logNormaliser?: number): SampleOutcome {
    const generate = sequence.generate;
    if (generate === undefined) throw new Error('not a generate sequence');
    const sampled = generate.sampler.next(logits, logNormaliser);
    if (sampled.token === this.tokenizer.eosTokenId) {
      return { token: undefined, finishReason: 'stop' };
    }
    const index = generate.generated;
    generate.generated += 1;
    generate.pending = sampled.token;
    const text = generate.stopFilter.push(generate.decoder.push(sampled.token));
    const top = sampled.top?.map((alternative) => ({
      text: this.tokenizer.decode([alternative.token]),
      logprob: alternative.logprob,
    }));
    return {
      token: {
        type: 'token',
        id: sequence.request.id,
        index,
        token: sampled.token,
        text,
        logprob: sampled.logprob,
        top,
      },
      finishReason: this.finishReasonOf(generate),
    };
  }

  /**
   * The sequence's final event: the text still held back (an incomplete UTF-8 character, a
   * possible stop-string start that was not one), usage, and what its kind returns at the end.
   */
  finished(sequence: Sequence, reason: FinishReason): FinishedEvent {
    const generate = sequence.generate;
    let text = '';
    if (generate !== undefined && generate.stopFilter.stoppedBy === undefined) {
      text = generate.stopFilter.push(generate.decoder.flush()) + generate.stopFilter.flush();
    }
    return {
      type: 'finished',
      id: sequence.request.id,
      finishReason: reason,
      text,
      promptTokens: sequence.inputCount,
      cachedTokens: sequence.cachedTokens,
      completionTokens: generate?.generated ?? 0,
      position: sequence.position,
      ...(sequence.request.kind === 'digest' ? { state: sequence.state.slice().buffer } : {}),
      ...(sequence.logprobs === undefined
        ? {}
        : { logprobs: sequence.logprobs.slice(0, Math.max(0, sequence.absorbed)) }),
    };
  }
}
