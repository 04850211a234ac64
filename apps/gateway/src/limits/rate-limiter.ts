import type { RedisClient } from '#cluster';
import { RATE_LIMIT_WINDOW_MS as WINDOW_MS, type GatewayKeys } from '#contracts';
import { rateLimited } from '../common/api-error.js';

/**
 * Per-tenant request and token budgets (RATE_LIMIT_RPM, RATE_LIMIT_TPM; 0 = unlimited), counted
 * in fixed one-minute windows shared by every gateway through Redis. Requests are counted when
 * admitted; tokens by the workers when each job completes (whichever endpoint submitted it), so
 * a tenant over its token budget is refused from its next request until the window turns.
 */
export class RateLimiter {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: GatewayKeys,
    private readonly requestsPerMinute: number,
    private readonly tokensPerMinute: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Counts one request; throws 429 with Retry-After when a budget is spent. The token budget
   * refuses only requests that would spend tokens: a tenant over it can still read its results.
   */
  async admit(tenant: string, spendsTokens: boolean): Promise<void> {
    if (this.requestsPerMinute === 0 && this.tokensPerMinute === 0) return;
    const now = this.now();
    const window = Math.floor(now / WINDOW_MS);
    const retryAfter = ((window + 1) * WINDOW_MS - now) / 1000;
    const requestsKey = this.keys.rateLimit(tenant, 'requests', window);
    const results = await this.redis
      .multi()
      .incr(requestsKey)
      .pexpire(requestsKey, WINDOW_MS * 2)
      .get(this.keys.rateLimit(tenant, 'tokens', window))
      .exec();
    const requests = Number(results?.[0]?.[1] ?? 0);
    const tokens = Number(results?.[2]?.[1] ?? 0);
    if (this.requestsPerMinute > 0 && requests > this.requestsPerMinute) {
      throw rateLimited(
        `Rate limit reached: ${this.requestsPerMinute} requests per minute for this key. ` +
          `Retry in ${Math.ceil(retryAfter)} s.`,
        retryAfter,
        'rate_limit_requests',
      );
    }
    if (spendsTokens && this.tokensPerMinute > 0 && tokens >= this.tokensPerMinute) {
      throw rateLimited(
        `Rate limit reached: ${this.tokensPerMinute} tokens per minute for this key ` +
          `(${tokens} used). Retry in ${Math.ceil(retryAfter)} s.`,
        retryAfter,
        'rate_limit_tokens',
      );
    }
  }
}
