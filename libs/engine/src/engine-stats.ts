/**
 * What an engine has done since it started, as running totals: the engine thread sends a copy
 * with every batch of events, and the worker exposes them to Prometheus, where rate() turns them
 * into tokens/s, steps/s, mean step time (seconds / steps) and mean batch size (rows / steps).
 */
export interface EngineStats {
  /** Batched decode steps (T = 1), the rows they carried, and their time on the graph. */
  decodeSteps: number;
  decodeRows: number;
  decodeSeconds: number;
  /** Prefill chunks, the tokens they read, and their time on the graph. */
  prefillChunks: number;
  prefillTokens: number;
  prefillSeconds: number;
  /** Rows of the latest decode step: the batch size now. */
  lastDecodeRows: number;
}

export function emptyEngineStats(): EngineStats {
  return {
    decodeSteps: 0,
    decodeRows: 0,
    decodeSeconds: 0,
    prefillChunks: 0,
    prefillTokens: 0,
    prefillSeconds: 0,
    lastDecodeRows: 0,
  };
}

export function recordDecodeStep(stats: EngineStats, rows: number, ms: number): void {
  stats.decodeSteps += 1;
  stats.decodeRows += rows;
  stats.decodeSeconds += ms / 1000;
  stats.lastDecodeRows = rows;
}

export function recordPrefillChunk(stats: EngineStats, tokens: number, ms: number): void {
  stats.prefillChunks += 1;
  stats.prefillTokens += tokens;
  stats.prefillSeconds += ms / 1000;
}
