/**
 * The graph's own decode step as the benchmarks time it: batch B at T = 1, position 100, with a
 * batch state of non-zero values (so that memory is really read), reused from step to step.
 */
import { headDim, type ModelConfig } from '#model';
import type { ChunkRequest } from '#engine/runtime';

export function decodeStepRequest(config: ModelConfig, batch: number): ChunkRequest {
  const state = new Float32Array(config.numLayers * batch * config.numHeads * headDim(config) ** 2);
  for (let index = 0; index < state.length; index += 1) state[index] = Math.sin(index) * 0.01;
  return {
    inputIds: Array.from({ length: batch }, (_unused, row) => 5 + row),
    batch,
    chunk: 1,
    startPos: new Array<number>(batch).fill(100),
    validLen: new Array<number>(batch).fill(1),
    state,
  };
}
