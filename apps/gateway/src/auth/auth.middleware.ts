import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { ErrorType } from '#contracts';
import { ApiError } from '../common/api-error.js';
import { sendApiError, toApiError } from '../common/exception-filter.js';
import type { ApiKeys, Principal } from './api-keys.js';

/** The key of a request: `Authorization: Bearer KEY`, or the password of Basic auth (browsers). */
function presentedKey(request: Request): string | undefined {
  const header = request.header('authorization');
  if (header === undefined) return undefined;
  const [scheme, value] = header.split(/\s+/, 2);
  if (value === undefined) return undefined;
  if (scheme?.toLowerCase() === 'bearer') return value;
  if (scheme?.toLowerCase() === 'basic') {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon === -1 ? undefined : decoded.slice(colon + 1);
  }
  return undefined;
}

const unauthorized = (message: string, admin: boolean) =>
  new ApiError(
    401,
    ErrorType.Authentication,
    message,
    null,
    'invalid_api_key',
    // The queue dashboard is opened in a browser, which can only send a key through Basic auth.
    admin ? { 'WWW-Authenticate': 'Basic realm="dijiang admin"' } : {},
  );

/**
 * Resolves the request's principal (tenant, admin) from its API key, before routing (an unknown
 * `/v1` route answers 401 without a key, as OpenAI's does). `/admin` additionally needs an admin
 * key. The tenant's budgets are applied by the routes' guard (`RateLimitGuard`).
 */
export function authMiddleware(keys: ApiKeys, area: 'api' | 'admin') {
  const authenticate = (request: Request, response: Response): void => {
    const admin = area === 'admin';
    let principal: Principal | undefined;
    if (keys.disabled) {
      principal = keys.verify('');
    } else {
      const key = presentedKey(request);
      if (key === undefined) {
        throw unauthorized(
          keys.count === 0
            ? 'This gateway has no API keys configured: set API_KEYS (or API_KEYS_FILE).'
            : "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
          admin,
        );
      }
      principal = keys.verify(key);
      if (principal === undefined) throw unauthorized('Incorrect API key provided.', admin);
    }
    if (principal === undefined) throw unauthorized('Incorrect API key provided.', admin);
    if (admin && !principal.admin) {
      throw new ApiError(
        403,
        ErrorType.Authentication,
        'This key is not an admin key (see ADMIN_API_KEYS).',
        null,
        'admin_key_required',
      );
    }
    response.locals.principal = principal;
  };
  return (request: Request, response: Response, next: NextFunction): void => {
    try {
      authenticate(request, response);
    } catch (error) {
      sendApiError(response, toApiError(error));
      return;
    }
    next();
  };
}

/** The principal {@link authMiddleware} resolved, or undefined on a route that takes no key. */
export function principalOf(response: Response): Principal | undefined {
  return response.locals.principal as Principal | undefined;
}

/** The tenant of an authenticated request (set by {@link authMiddleware}). */
export const Tenant = createParamDecorator((_data: unknown, context: ExecutionContext): string => {
  const principal = principalOf(context.switchToHttp().getResponse<Response>());
  if (principal === undefined) throw new Error('route is not behind the auth middleware');
  return principal.tenant;
});
