import type { GatewayKeys, RedisKeys } from '#contracts';
import type { GatewayEnv } from '#config';
import type { Logger } from '#cluster';
import { valueToken } from './providers.js';

/**
 * The tokens of the values the gateway injects that are not class instances; classes (services,
 * stores, the Redis connections) are their own tokens.
 */
export const GATEWAY_ENV = valueToken<GatewayEnv>('GatewayEnv');
export const LOGGER = valueToken<Logger>('Logger');
/** Key layout of what gateways and workers share (queues, streams, states, documents). */
export const REDIS_KEYS = valueToken<RedisKeys>('RedisKeys');
/** Key layout of what only gateways read and write (files, batches, job records, limits). */
export const GATEWAY_KEYS = valueToken<GatewayKeys>('GatewayKeys');
