import { ENGINE_DEFAULTS } from './defaults.js';

/** How the scheduler sizes its work; the defaults are `ENGINE_DEFAULTS`' (defaults.ts). */
export interface SchedulerOptions {
  /** Decode rows per step. */
  maxBatch: number;
  /** Prefill chunk when nothing is decoding. */
  maxPrefillChunk: number;
  /** Smallest prefill chunk while sequences decode. */
  minPrefillChunk: number;
}

export const defaultSchedulerOptions: SchedulerOptions = {
  maxBatch: ENGINE_DEFAULTS.maxBatch,
  maxPrefillChunk: ENGINE_DEFAULTS.maxPrefillChunk,
  minPrefillChunk: ENGINE_DEFAULTS.minPrefillChunk,
};
