export * from './redis.js';
export * from './redis-ha.js';
export * from './cluster-nodes.js';
export * from './apps.js';
export * from './model.js';
export * from './english.js';
