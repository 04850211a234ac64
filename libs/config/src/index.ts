export * from './env.js';
export * from './schemas.js';
export * from './redis-target.js';
