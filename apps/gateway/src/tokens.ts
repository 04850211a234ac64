/**
 * Injection tokens. Every provider is injected by an explicit token so dependency injection never
 * relies on emitted decorator metadata.
 */
export const GATEWAY_ENV = Symbol('GatewayEnv');
export const LOGGER = Symbol('Logger');
/** A fail-fast Redis client for health probes and request-path reads and writes. */
export const PROBE_REDIS = Symbol('ProbeRedis');
export const REDIS_KEYS = Symbol('RedisKeys');
export const GATEWAY_KEYS = Symbol('GatewayKeys');
export const SERVICES = Symbol('GatewayServices');
export const MODELS = Symbol('ModelsService');
export const COMPLETIONS = Symbol('CompletionsService');
export const JOBS = Symbol('JobsService');
export const STATES = Symbol('StateStore');
export const FILE_STORE = Symbol('FileStore');
export const BATCHES = Symbol('BatchesService');
export const METRICS = Symbol('GatewayMetrics');
