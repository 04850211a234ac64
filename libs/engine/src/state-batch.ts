/**
 * DiJiang states are stored per sequence as [layers, H, d, d] and fed to the graph as one
 * [layers, B, H, d, d] tensor: each layer's block of every row is copied into place. The copy is
 * proportional to the state size (constant per sequence), not to any context length.
 */
export function gatherStates(
  states: readonly Float32Array[],
  layers: number,
  layerBlock: number,
): Float32Array {
  const batch = states.length;
  const out = new Float32Array(layers * batch * layerBlock);
  for (let layer = 0; layer < layers; layer += 1) {
    states.forEach((state, row) => {
      out.set(
        state.subarray(layer * layerBlock, (layer + 1) * layerBlock),
        (layer * batch + row) * layerBlock,
      );
    });
  }
  return out;
}

/** The inverse of {@link gatherStates}: one [layers, H, d, d] array per row. */
export function scatterStates(
  batched: Float32Array,
  batch: number,
  layers: number,
  layerBlock: number,
): Float32Array[] {
  const rows = Array.from({ length: batch }, () => new Float32Array(layers * layerBlock));
  for (let layer = 0; layer < layers; layer += 1) {
    rows.forEach((row, index) => {
      const from = (layer * batch + index) * layerBlock;
      row.set(batched.subarray(from, from + layerBlock), layer * layerBlock);
    });
  }
  return rows;
}
