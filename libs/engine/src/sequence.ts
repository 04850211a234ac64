import type { Tokenizer } from '#model';
import { ENGINE_DEFAULTS } from './defaults.js';
import type { PrefixHash } from './prefix-hashes.js';
import type { CheckpointPolicy, SequenceRequest } from './protocol.js';
import type { TokenSampler } from './sampler.js';
import type { StopStringFilter } from './stop-strings.js';
import type { TokenList } from './token-list.js';

/** tokenized: waits for its start; prefill: absorbs its input; decode: samples; done: left. */
export type Phase = 'tokenized' | 'prefill' | 'decode' | 'done';

/** What a generating sequence carries besides its tokens and state. */
export interface GenerateState {
  sampler: TokenSampler;
  decoder: ReturnType<Tokenizer['createDecodeStream']>;
  stopFilter: StopStringFilter;
  maxTokens: number;
  /** Output tokens so far, replayed ones included. */
  generated: number;
  /** The last sampled token, fed at the next decode step. */
  pending: number;
}

/** One sequence in the engine; the logical token list is the input then the generated tokens. */
export class Sequence {
  phase: Phase = 'tokenized';
  state: Float32Array;
  /** Absolute position of the next token to feed. */
  position = 0;
  /** Tokens of `tokens` already absorbed into `state`. */
  absorbed = 0;
  cachedTokens = 0;
  /** Prefill chunks run for the input since this engine started the sequence. */
  promptChunks = 0;
  cancelled = false;
  suspended = false;
  generate: GenerateState | undefined;
  /** Score: log-prob of tokens[i + 1] given tokens[0..i]. */
  logprobs: Float64Array | undefined;
  lastServedTick = -1;
  sinceCheckpoint = { tokens: 0, at: performance.now() };
  /** Score: log-probs before this index are already in a checkpoint. */
  logprobsCheckpointed = 0;

  constructor(
    readonly request: SequenceRequest,
    /** Input tokens, then (after start) the replayed output tokens. */
    readonly tokens: TokenList,
    readonly inputCount: number,
    readonly prefixes: PrefixHash[],
    stateSize: number,
  ) {
    this.state = new Float32Array(stateSize);
  }

  /** How many tokens must be absorbed before the logits are used (meaningful before decode). */
  get feedEnd(): number {
    // Scoring predicts tokens[1..n-1] from the positions before them: the last token is never fed.
    return this.request.kind === 'score' ? Math.max(0, this.tokens.length - 1) : this.tokens.length;
  }

  /**
   * Where the prefill stops: the input's end. A resumed generation's replayed tokens come after
   * it and are fed by decode steps, one at a time as when they were first generated.
   */
  get prefillEnd(): number {
    return Math.min(this.inputCount, this.feedEnd);
  }

  /**
   * The token a decode step feeds next: the next replayed one while a resumed sequence catches
   * up, then the one sampled at the last step.
   */
  nextToken(): number {
    if (this.absorbed < this.tokens.length) return this.tokens.at(this.absorbed);
    if (this.generate === undefined) {
      throw new Error(`sequence ${this.request.id} decodes without a generation state`);
    }
    return this.generate.pending;
  }

  get checkpointPolicy(): CheckpointPolicy {
    return this.request.checkpoint ?? ENGINE_DEFAULTS.checkpoint;
  }
}
