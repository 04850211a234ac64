export * from './lifecycle.js';
export * from './ports.js';
export * from './service-process.js';
export * from './redis-server.js';
export * from './malloc-tuning.js';
export * from './redis-sentinels.js';
