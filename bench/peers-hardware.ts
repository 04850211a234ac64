/**
 * What this machine allows, measured in the same run as the peers benchmark: memory bandwidth
 * (bounds B = 1 decode, which reads every weight once per token) and the fp32 MatMul peak (bounds
 * large batches and prefill). Also the bytes and FLOPs each engine's decode step needs.
 */
import { headDim, parameterCount, type ModelConfig } from '#model';

/** Bytes copied per measurement: far beyond any cache. @defaultValue 512 MiB */
const COPY_BYTES = 512 * 2 ** 20;

/**
 * Memory bandwidth in GB/s: the best of 5 copies of a 512 MiB buffer (memcpy in one thread),
 * counting the bytes read and written. One thread's copy is a lower bound of what two threads
 * reading can reach; on this machine's two cores the two are close.
 */
export function memoryBandwidthGBs(): number {
  const source = Buffer.alloc(COPY_BYTES, 1);
  const target = Buffer.alloc(COPY_BYTES);
  let best = Infinity;
  for (let run = 0; run < 6; run += 1) {
    const started = performance.now();
    source.copy(target);
    const ms = performance.now() - started;
    // The first copy also faults the target's pages in.
    if (run > 0) best = Math.min(best, ms);
  }
  return (2 * COPY_BYTES) / (best / 1000) / 1e9;
}

/** Weights a decode step multiplies by: every parameter but the input embedding (one row is read). */
export function matmulParameters(config: ModelConfig): number {
  return parameterCount(config) - config.vocabSize * config.hiddenSize;
}

/** FLOPs of one softmax (llama.cpp) decode token at `context`: weights plus q.K and p.V. */
export function softmaxTokenFlops(config: ModelConfig, context: number): number {
  return 2 * matmulParameters(config) + 4 * config.numLayers * config.hiddenSize * context;
}

/**
 * FLOPs of one DiJiang decode token: weights (W_G included in the parameters) plus per head the
 * feature maps of q and k (x P: d x d each), the state read phi(q) R and update phi(k)^T v.
 */
export function dijiangTokenFlops(config: ModelConfig): number {
  const d = headDim(config);
  return 2 * matmulParameters(config) + 8 * config.numLayers * config.numHeads * d * d;
}

/** llama.cpp's KV cache bytes per token: K and V of every layer in float16 (its default type). */
export function llamaKvBytesPerToken(config: ModelConfig): number {
  return 2 * config.numLayers * config.hiddenSize * 2;
}
