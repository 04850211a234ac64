/**
 * The engine's runtime entry (`#engine/runtime`): the continuous-batching scheduler, state
 * batching and the onnxruntime owner (ort/). This side loads onnxruntime-node: it is for the
 * engine thread, benchmarks and in-process tests, never for a thread that serves I/O.
 */
export * from './ort/index.js';
export * from './scheduler.js';
export * from './scheduler-options.js';
export * from './state-batch.js';
