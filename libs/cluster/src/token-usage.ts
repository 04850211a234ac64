import type { Redis } from 'ioredis';
import { gatewayKeys, RATE_LIMIT_WINDOW_MS, type RedisKeys } from '#contracts';

/**
 * Charges the tokens a tenant's job used (prompt and output) to the tenant's current rate-limit
 * window, which every gateway reads against RATE_LIMIT_TPM. Workers charge each job once, when it
 * completes, so completions, chat, batch lines, `/v1/jobs` and `/v1/states` digests all count
 * the same way, however (and whether) a client reads the result.
 */
export async function chargeTenantTokens(
  redis: Redis,
  keys: RedisKeys,
  tenant: string,
  tokens: number,
): Promise<void> {
  if (tokens <= 0) return;
  const window = Math.floor(Date.now() / RATE_LIMIT_WINDOW_MS);
  const key = gatewayKeys(keys.prefix).rateLimit(tenant, 'tokens', window);
  await redis
    .multi()
    .incrby(key, tokens)
    .pexpire(key, RATE_LIMIT_WINDOW_MS * 2)
    .exec();
}
