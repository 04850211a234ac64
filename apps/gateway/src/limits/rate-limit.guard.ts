import { type CanActivate, type ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Response } from 'express';
import { principalOf } from '../auth/auth.middleware.js';
import { RateLimiter } from './rate-limiter.js';

/**
 * Marks a route whose requests make a model process tokens: they are refused while the tenant's
 * token budget (RATE_LIMIT_TPM) is spent. Every other route only counts against RATE_LIMIT_RPM.
 */
export const SpendsTokens = Reflector.createDecorator<undefined, true>({ transform: () => true });

/**
 * Applies the tenant's budgets to every request that carries one (the `/v1` routes, whose
 * principal the auth middleware resolved), before the route runs: 429 with Retry-After when a
 * budget is spent. Whether the route spends tokens is what it declares with {@link SpendsTokens}.
 */
@Injectable()
export class RateLimitGuard implements CanActivate {
  constructor(
    private readonly limiter: RateLimiter,
    private readonly reflector: Reflector,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const principal = principalOf(context.switchToHttp().getResponse<Response>());
    // Health, metrics and docs take no key, so they have no budget to count against.
    if (principal === undefined) return true;
    const spendsTokens = this.reflector.get(SpendsTokens, context.getHandler()) as true | undefined;
    await this.limiter.admit(principal.tenant, spendsTokens === true);
    return true;
  }
}
