/**
 * The engine's defaults, in one place: the engine, its thread, the scheduler and the worker's
 * environment schema (libs/config) all read them from here.
 */
export const ENGINE_DEFAULTS = {
  /**
   * Execution device; `cuda` runs the bundle's fp16 graph.
   * @defaultValue 'cpu'
   */
  device: 'cpu',
  /**
   * Decode rows per step: the most sequences one decode step advances together.
   * @defaultValue 64
   */
  maxBatch: 64,
  /**
   * Tokens per prefill chunk when nothing decodes; bounds the graph's [H, T, T] intra-chunk
   * matrices.
   * @defaultValue 512
   */
  maxPrefillChunk: 512,
  /**
   * Smallest prefill chunk while sequences decode, so a document still advances every tick.
   * @defaultValue 16
   */
  minPrefillChunk: 16,
  /** How often a running sequence's state is offered for checkpointing (CheckpointPolicy). */
  checkpoint: {
    /** After this many generated tokens. @defaultValue 64 */
    everyTokens: 64,
    /** After this much time. @defaultValue 5000 ms */
    everyMs: 5000,
    /** While prefilling: at the first chunk boundary after this many tokens. @defaultValue 4096 */
    prefillEveryTokens: 4096,
  },
  /**
   * Prompt prefix states are reported (for the prefix cache) every this many tokens; 0 disables.
   * @defaultValue 256
   */
  prefixBlockTokens: 256,
} as const;
