/**
 * DiJiang states are stored per sequence as [layers, H, d, d] and fed to the graph as one
 * [layers, B, H, d, d] tensor: each layer's block of every row is copied into place. The copy is
 * proportional to the state size (constant per sequence), not to any context length.
 *
 * Both directions copy into memory that already exists. A batch of states is tens of megabytes
 * (24 MiB for 32 pythia-70m sequences); allocating it afresh each step costs more than the copy
 * itself, in page faults on memory the allocator has just handed back to the system.
 */
export class StateBatch {
  private buffer = new Float32Array(0);

  constructor(
    private readonly layers: number,
    /** Floats per layer of one sequence's state (H·d·d). */
    private readonly layerBlock: number,
  ) {}

  /**
   * The states of `states`' rows as one [layers, B, H, d, d] array: a view of a buffer that is
   * reused by the next call, so it must not outlive the step it was gathered for.
   */
  gather(states: readonly Float32Array[]): Float32Array {
    const batch = states.length;
    const size = this.layers * batch * this.layerBlock;
    if (this.buffer.length < size) this.buffer = new Float32Array(size);
    const out = this.buffer.subarray(0, size);
    for (let layer = 0; layer < this.layers; layer += 1) {
      states.forEach((state, row) => {
        out.set(
          state.subarray(layer * this.layerBlock, (layer + 1) * this.layerBlock),
          (layer * batch + row) * this.layerBlock,
        );
      });
    }
    return out;
  }

  /** The inverse of {@link gather}: copies each row of `batched` into its sequence's own array. */
  scatter(batched: Float32Array, states: readonly Float32Array[]): void {
    const batch = states.length;
    for (let layer = 0; layer < this.layers; layer += 1) {
      states.forEach((state, row) => {
        const from = (layer * batch + row) * this.layerBlock;
        state.set(batched.subarray(from, from + this.layerBlock), layer * this.layerBlock);
      });
    }
  }
}
