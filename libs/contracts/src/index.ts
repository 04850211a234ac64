export * from './errors.js';
export * from './jobs.js';
export * from './redis-keys.js';
export * from './workers.js';
export * from './streams.js';
export * from './gateway.js';
export * from './job-items.js';
