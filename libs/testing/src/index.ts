export * from './redis.js';
export * from './apps.js';
