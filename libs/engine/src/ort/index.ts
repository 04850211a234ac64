/**
 * The one owner of onnxruntime-node in the project: devices and their execution providers,
 * sessions, runs. Only the engine thread, benchmarks and in-process tests load it (through
 * `#engine/runtime`); the engine's client entry (`#engine`) never reaches it.
 */
export * from './chunk.js';
export * from './providers.js';
export * from './run.js';
export * from './session.js';
