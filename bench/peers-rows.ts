/** The peers benchmark's rows, and the helpers both of its measurements share. */
import type { ModelConfig } from '#model';
import type { LlamaModel } from 'node-llama-cpp';
import type { LogitCheck } from './llama-peer.js';
import type { OurEngine } from './peers-ours.js';
import { median } from './stats.js';

/** Ours; llama.cpp at the shared thread count; llama.cpp at a control thread count. */
export type EngineName = 'dijiang (ours)' | 'llama.cpp' | `llama.cpp (${number} threads)`;

/** One engine's decode at one context: medians over the rounds. */
export interface DecodeRow {
  model: string;
  precision: string;
  engine: EngineName;
  context: number;
  /** Sequences decoding together (1, or the concurrent count). */
  sequences: number;
  tokensPerSecond: number;
  roundTokensPerSecond: number[];
  /** Median time of one step (all sequences advance one token). */
  stepMs: number;
  /** Bytes one step reads: weights once, plus every sequence's state or KV cache. */
  bytesPerStep: number;
  achievedGBs: number;
  gflops: number;
}

export interface PrefillRow {
  model: string;
  precision: string;
  engine: EngineName;
  /** Prompt length: the ladder's tokens up to this rung, prefilled once. */
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
}

export interface MemoryRow {
  model: string;
  precision: string;
  context: number;
  /** llama.cpp's KV cache for one sequence at `context` (float16 K and V). */
  llamaKvBytes: number;
  /** Our state for one sequence, at any context. */
  oursStateBytes: number;
  /** This process's resident set with both engines at this rung (both share the process). */
  rssBytes: number;
}

export interface EntryResult {
  check?: LogitCheck;
  decode: DecodeRow[];
  prefill: PrefillRow[];
  memory: MemoryRow[];
}

/** Tokens/s while every sequence decodes: after the last first token, before the first last one. */
export function windowTokensPerSecond(arrivals: readonly (readonly number[])[]): number {
  const start = Math.max(...arrivals.map((times) => times[0] ?? Infinity));
  const end = Math.min(...arrivals.map((times) => times.at(-1) ?? -Infinity));
  const tokens = arrivals.flat().filter((time) => time > start && time <= end).length;
  return tokens / ((end - start) / 1000);
}

export interface Engines {
  llama?: { model: LlamaModel; weightBytes: number };
  ours?: { engine: OurEngine; weightBytes: number };
}

/** Prompt ids (deterministic, spread over the vocabulary) for `count` tokens from `offset`. */
export function promptIds(config: ModelConfig, offset: number, count: number): number[] {
  return Array.from({ length: count }, (_unused, index) => {
    const n = offset + index;
    return (n * 7919 + ((n * n) % 104729)) % config.vocabSize;
  });
}

export function decodeRow(
  base: Omit<
    DecodeRow,
    'tokensPerSecond' | 'roundTokensPerSecond' | 'stepMs' | 'achievedGBs' | 'gflops'
  >,
  rates: number[],
  tokenFlops: number,
): DecodeRow {
  const tokensPerSecond = median(rates);
  const stepMs = (1000 * base.sequences) / tokensPerSecond;
  return {
    ...base,
    tokensPerSecond,
    roundTokensPerSecond: rates,
    stepMs,
    achievedGBs: base.bytesPerStep / (stepMs / 1000) / 1e9,
    gflops: (tokensPerSecond * tokenFlops) / 1e9,
  };
}
