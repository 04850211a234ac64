export * from './protocol.js';
export * from './random.js';
export * from './sampler.js';
export * from './scheduler.js';
export * from './state-batch.js';
export * from './stop-strings.js';
export * from './devices.js';
export * from './engine.js';
