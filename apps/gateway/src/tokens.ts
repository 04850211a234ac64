/**
 * Injection tokens. Every provider is injected by an explicit token so dependency injection never
 * relies on emitted decorator metadata.
 */
export const GATEWAY_ENV = Symbol('GatewayEnv');
export const LOGGER = Symbol('Logger');
/** A fail-fast Redis client for health probes and reads (see createRedis 'probe'). */
export const PROBE_REDIS = Symbol('ProbeRedis');
export const REDIS_KEYS = Symbol('RedisKeys');
