/**
 * The engine's client entry (`#engine`): what a thread that hands sequences to an engine needs —
 * the Engine that starts the engine thread, the protocol, sampling parameters, scoring summaries
 * and defaults. Nothing imported from here may reach onnxruntime-node (npm run cycles checks it):
 * the worker's main thread serves BullMQ locks and must never load the native addon. The engine
 * thread's own side is `#engine/runtime` (runtime.ts).
 */
export * from './defaults.js';
export * from './devices.js';
export * from './engine.js';
export * from './engine-stats.js';
export * from './protocol.js';
export * from './random.js';
export * from './sampler.js';
export * from './scoring.js';
export * from './stop-strings.js';
