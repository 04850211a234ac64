import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { provideFactory } from '../core/providers.js';
import { RedisConnections } from '../core/redis-connections.js';
import { GATEWAY_ENV, GATEWAY_KEYS } from '../core/tokens.js';
import { RateLimitGuard } from './rate-limit.guard.js';
import { RateLimiter } from './rate-limiter.js';

/** Per-tenant request and token budgets, applied to every route by {@link RateLimitGuard}. */
@Module({
  providers: [
    provideFactory(
      RateLimiter,
      [RedisConnections, GATEWAY_KEYS, GATEWAY_ENV],
      (connections, gateway, env) =>
        new RateLimiter(connections.commands, gateway, env.RATE_LIMIT_RPM, env.RATE_LIMIT_TPM),
    ),
    { provide: APP_GUARD, useClass: RateLimitGuard },
  ],
})
export class LimitsModule {}
