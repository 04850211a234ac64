export * from './logger.js';
export * from './redis.js';
export * from './worker-registry.js';
export * from './process.js';
export * from './ports.js';
export * from './redis-server.js';
export * from './services.js';
