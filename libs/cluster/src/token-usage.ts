import type { RedisClient } from './redis.js';
import { gatewayKeys, RATE_LIMIT_WINDOW_MS, type RedisKeys } from '#contracts';
import { withLuaCommands } from './lua-commands.js';

/** A job's charge marker outlives any retry of the job. @defaultValue 7 days */
const CHARGE_MARKER_TTL_SECONDS = 7 * 24 * 3600;

/**
 * KEYS: the job's charge marker, the tenant's token counter, the cluster's tokens-processed
 * counter; ARGV: tokens, counter TTL (ms), marker TTL (s). Charges (and counts) only when it
 * sets the marker.
 */
const CHARGE_ONCE_SCRIPT = `
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then return 0 end
redis.call('INCRBY', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('INCRBY', KEYS[3], ARGV[1])
return 1
`;

interface TokenUsageCommands {
  /** {@link CHARGE_ONCE_SCRIPT}: 1 when it charged, 0 when the job was charged before. */
  chargeTokensOnce(
    chargedMarkerKey: string,
    tokenCounterKey: string,
    tokensProcessedKey: string,
    tokens: number,
    counterTtlMs: number,
    markerTtlSeconds: number,
  ): Promise<number>;
}

const withTokenUsageCommands = (redis: RedisClient): RedisClient & TokenUsageCommands =>
  withLuaCommands<TokenUsageCommands>(redis, {
    chargeTokensOnce: { numberOfKeys: 3, lua: CHARGE_ONCE_SCRIPT },
  });

/**
 * Charges the tokens a tenant's job used (prompt and output) to the tenant's current rate-limit
 * window, which every gateway reads against RATE_LIMIT_TPM. Workers charge each job once, when it
 * completes, so completions, chat, batch lines, `/v1/jobs` and `/v1/states` digests all count
 * the same way, however (and whether) a client reads the result. A job whose completion is
 * retried (its worker died after charging) is not charged again. The same tokens are added to
 * the cluster's {@link RedisKeys.tokensProcessed} counter.
 */
export async function chargeTenantTokens(
  redis: RedisClient,
  keys: RedisKeys,
  jobId: string,
  tenant: string,
  tokens: number,
): Promise<void> {
  if (tokens <= 0) return;
  const window = Math.floor(Date.now() / RATE_LIMIT_WINDOW_MS);
  await withTokenUsageCommands(redis).chargeTokensOnce(
    keys.tokensCharged(jobId),
    gatewayKeys(keys.prefix).rateLimit(tenant, 'tokens', window),
    keys.tokensProcessed,
    tokens,
    RATE_LIMIT_WINDOW_MS * 2,
    CHARGE_MARKER_TTL_SECONDS,
  );
}
