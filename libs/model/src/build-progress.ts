/**
 * Progress of building a model bundle. The slow steps (initialising weights, building the graph,
 * quantizing, writing the files) are synchronous or run back to back, so they report through a
 * callback that the caller renders at once; nothing here knows about terminals.
 */

/** The steps of building a bundle, in the order they run. */
export const BUILD_STAGES = ['weights', 'graph', 'quantize', 'write'] as const;
export type BuildStage = (typeof BUILD_STAGES)[number];

/**
 * What each stage counts: parameters initialised (`weights`), parameters of the large matrices
 * stored in the graph (`graph`, or `quantize` when int8/int4 weights are quantized on the way),
 * and bytes written to the bundle's graph files (`write`).
 */
export const BUILD_STAGE_UNITS = {
  weights: 'parameters',
  graph: 'parameters',
  quantize: 'parameters',
  write: 'bytes',
} as const satisfies Record<BuildStage, string>;

/** Called with `done` of `total` units of `stage` (see {@link BUILD_STAGE_UNITS}). */
export type BuildProgress = (done: number, total: number, stage: BuildStage) => void;

/**
 * Units between two reports inside one large tensor or buffer: often enough for a bar to move
 * several times a second, rarely enough that reporting costs nothing measurable.
 */
export const PROGRESS_STEP = 2 ** 20;

/**
 * Counts `stage`'s units toward `total`: reports 0 at once, then the running sum after every
 * `advance(units)`. Without a listener it only counts.
 */
export function stageCounter(
  stage: BuildStage,
  total: number,
  onProgress: BuildProgress | undefined,
): (units: number) => void {
  let done = 0;
  onProgress?.(done, total, stage);
  return (units) => {
    done += units;
    onProgress?.(done, total, stage);
  };
}
