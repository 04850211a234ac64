import type { JobPriority } from '#contracts';
import type { BundleChat } from '#model';
import type { Device } from './devices.js';
import type { EngineStats } from './engine-stats.js';
import type { SamplingParams, TokenLogprob } from './sampler.js';

/**
 * What the engine computes for a sequence, and the messages between the calling thread and the
 * engine thread. Everything here is structured-clone friendly; states travel as transferable
 * ArrayBuffers, never copied through JSON.
 */

export type SequenceKind = 'generate' | 'score' | 'digest';

export interface GenerateOptions {
  sampling: SamplingParams;
  /** Which choice of the request this sequence is (seeds its random stream). */
  choice: number;
  /** Output tokens in total, already generated ones included. */
  maxTokens: number;
  stop: readonly string[];
}

export interface ScoreOptions {
  /** Also report the perplexity of each window of this many tokens. */
  windowTokens: number | undefined;
}

/**
 * How often a running sequence's state is offered for checkpointing.
 * @defaultValue `ENGINE_DEFAULTS.checkpoint` (defaults.ts)
 */
export interface CheckpointPolicy {
  /** After this many generated tokens. */
  everyTokens: number;
  /** After this much time, in ms. */
  everyMs: number;
  /** While prefilling: at the first chunk boundary after this many tokens. */
  prefillEveryTokens: number;
}

export interface SequenceRequest {
  id: string;
  kind: SequenceKind;
  /** The cluster's one priority scale: lower runs first. */
  priority: JobPriority;
  /** The input text; tokenized on the engine thread (never on the caller's event loop). */
  text: string;
  generate?: GenerateOptions;
  score?: ScoreOptions;
  /** Report states at multiples of this many tokens for the prefix cache; 0 disables. */
  prefixBlockTokens: number;
  checkpoint?: CheckpointPolicy;
}

/** Where the sequence starts, decided by the caller after it has seen the token count. */
export interface SequenceStart {
  /** Recurrent state [layers, H, d, d]; absent = zeros (nothing processed). */
  state?: ArrayBuffer;
  /** Absolute position of the first token not yet in `state`. */
  position: number;
  /**
   * Leading tokens of the logical sequence (input tokens, then `replay`) that `state` already
   * holds. The rest is processed before anything is sampled.
   */
  skip: number;
  /** Generated tokens already streamed by an earlier run (resume): replayed, never re-sampled. */
  replay: readonly number[];
  /** Score resume: log-probs of the tokens scored before `skip`. */
  priorLogprobs?: Float64Array;
}

export interface Tokenized {
  type: 'tokenized';
  id: string;
  /** Input tokens of the sequence (for score, including the leading end-of-text token). */
  tokenCount: number;
  /** Hashes of the token prefixes at each block boundary below the last token. */
  prefixes: { tokens: number; hash: string }[];
}

export interface TokenEvent {
  type: 'token';
  id: string;
  index: number;
  token: number;
  /** Text released by this token (after UTF-8 completion and stop-string hold-back). */
  text: string;
  logprob: number;
  top: { text: string; logprob: number }[] | undefined;
}

export interface ProgressEvent {
  type: 'progress';
  id: string;
  /** Input tokens processed so far and in total. */
  done: number;
  total: number;
}

export interface CheckpointEvent {
  type: 'checkpoint';
  id: string;
  state: ArrayBuffer;
  position: number;
  /** Tokens of the logical sequence (input then generated) that the state holds. */
  absorbed: number;
  /** Score jobs: log-probs of tokens [logprobsOffset, absorbed), new since the last checkpoint. */
  logprobs?: Float64Array;
  logprobsOffset?: number;
}

export interface PrefixStateEvent {
  type: 'prefix-state';
  id: string;
  hash: string;
  tokens: number;
  state: ArrayBuffer;
}

export type FinishReason = 'stop' | 'length' | 'cancelled';

export interface FinishedEvent {
  type: 'finished';
  id: string;
  finishReason: FinishReason;
  /** Text held back at the end (a possible stop-string start that was not one). */
  text: string;
  /** Input tokens of the sequence, and how many came from the start state. */
  promptTokens: number;
  cachedTokens: number;
  completionTokens: number;
  /** Final state and its position (digest). */
  state?: ArrayBuffer;
  position: number;
  /** Score: log-prob of each scored token. */
  logprobs?: Float64Array;
}

/** The sequence stopped on request (worker shutdown) after a final checkpoint; resume elsewhere. */
export interface SuspendedEvent {
  type: 'suspended';
  id: string;
}

export interface FailedEvent {
  type: 'failed';
  id: string;
  message: string;
}

export type SequenceEvent =
  | Tokenized
  | TokenEvent
  | ProgressEvent
  | CheckpointEvent
  | PrefixStateEvent
  | FinishedEvent
  | SuspendedEvent
  | FailedEvent;

export type { SamplingParams, TokenLogprob };

/** What the engine thread runs; every field is set (defaults from `ENGINE_DEFAULTS`, defaults.ts). */
export interface EngineThreadOptions {
  bundleDir: string;
  device: Device;
  /** onnxruntime intra-op threads; undefined lets onnxruntime choose. */
  intraOpThreads: number | undefined;
  /** Rows per decode step. */
  maxBatch: number;
  /** Tokens per prefill chunk when nothing is decoding. */
  maxPrefillChunk: number;
}

/** Calling thread -> engine thread. */
export type EngineCommand =
  | { type: 'submit'; request: SequenceRequest }
  | { type: 'start'; id: string; start: SequenceStart }
  | { type: 'cancel'; id: string }
  | { type: 'suspend'; id: string }
  | { type: 'shutdown' };

/** Engine thread -> calling thread. */
export type EngineMessage =
  | {
      type: 'ready';
      modelId: string;
      stateBytes: number;
      vocabSize: number;
      /** The bundle's chat template, when it has one. */
      chat: BundleChat | undefined;
    }
  | {
      type: 'events';
      events: SequenceEvent[];
      /** The engine's running totals after the tick that produced these events. */
      stats: EngineStats;
    }
  | {
      type: 'fatal';
      message: string;
      /** The error's stack in the engine thread, so that the calling thread can show where. */
      stack: string | undefined;
    };
