/**
 * One chunk of the model for a batch, as plain arrays: what the scheduler asks for and gets back.
 * Nothing here touches onnxruntime, so code that only schedules chunks (and its tests, with a
 * scripted model) never loads the native addon.
 */

/** The KV cache of the softmax baseline: [layers, B, H, length, d] each, by absolute position. */
export interface KvCache {
  readonly key: Float32Array;
  readonly value: Float32Array;
  readonly length: number;
}

export interface ChunkRequest {
  /** Token ids [batch, chunk] row-major; padding (after valid_len) may hold any valid id. */
  readonly inputIds: ArrayLike<number>;
  readonly batch: number;
  readonly chunk: number;
  /** Absolute position of each row's first token. */
  readonly startPos: ArrayLike<number>;
  /** Number of real tokens in each row (the rest is right padding). */
  readonly validLen: ArrayLike<number>;
  /** DiJiang state [layers, B, H, d, d]. @defaultValue zeros (every row at position 0) */
  readonly state?: Float32Array;
  /** Softmax KV cache. @defaultValue empty */
  readonly kv?: KvCache;
  /** Target ids [batch, chunk] whose log-probs are returned. @defaultValue none (no scoring) */
  readonly targetIds?: ArrayLike<number>;
}

export interface ChunkResult {
  /** [batch, vocab] at each row's last valid position. */
  readonly logits: Float32Array;
  /** [batch] log sum exp of each row of `logits` (the log-softmax normaliser). */
  readonly logitsLogNormaliser: Float32Array;
  /** [batch, chunk] log-probs of the targets, when targets were given. */
  readonly targetLogprobs?: Float32Array;
  /** DiJiang state after the chunk. */
  readonly state?: Float32Array;
  /** Softmax KV cache after the chunk, trimmed to the longest row. */
  readonly kv?: KvCache;
}

/** Runs one chunk of the model (onnxruntime in the engine thread, or anything in tests). */
export type RunChunk = (request: ChunkRequest) => Promise<ChunkResult>;
