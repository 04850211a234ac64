export * from './random.js';
export * from './sampler.js';
export * from './stop-strings.js';
