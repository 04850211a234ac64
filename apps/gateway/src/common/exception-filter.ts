import {
  type ArgumentsHost,
  Catch,
  type ExceptionFilter,
  HttpException,
  Inject,
} from '@nestjs/common';
import type { Response } from 'express';
import { ErrorType } from '#contracts';
import type { Logger } from '#cluster';
import { RedisConnections } from '../core/redis-connections.js';
import { LOGGER } from '../core/tokens.js';
import { ApiError, unavailable } from './api-error.js';
import { isRedisOutage } from './redis-outage.js';

/** Errors raised by Express's body parsers carry an HTTP status and a `type`. */
interface HttpErrorLike {
  status: number;
  type?: string;
  message: string;
}

function isHttpErrorLike(error: unknown): error is HttpErrorLike {
  return (
    error instanceof Error &&
    typeof (error as Partial<HttpErrorLike>).status === 'number' &&
    ((error as Partial<HttpErrorLike>).status ?? 0) >= 400
  );
}

/**
 * The errors that say what their answer is: ours, Nest's own (unknown routes, bad methods) and
 * the body parsers' (malformed JSON, oversize bodies). Undefined for anything else.
 */
function knownApiError(error: unknown): ApiError | undefined {
  if (error instanceof ApiError) return error;
  if (error instanceof HttpException) {
    const status = error.getStatus();
    const type = status === 404 ? ErrorType.NotFound : ErrorType.InvalidRequest;
    const message =
      status === 404 ? error.message.replace(/^Cannot /, 'Unknown route: ') : error.message;
    return new ApiError(status, status >= 500 ? ErrorType.Server : type, message);
  }
  if (isHttpErrorLike(error)) {
    if (error.type === 'entity.too.large') {
      return new ApiError(
        413,
        ErrorType.InvalidRequest,
        `Request body too large: ${error.message}`,
        null,
        'payload_too_large',
      );
    }
    if (error.type === 'entity.parse.failed') {
      return new ApiError(
        400,
        ErrorType.InvalidRequest,
        `We could not parse the JSON body of your request: ${error.message}`,
        null,
        'invalid_json',
      );
    }
    return new ApiError(
      error.status >= 500 ? 500 : error.status,
      error.status >= 500 ? ErrorType.Server : ErrorType.InvalidRequest,
      error.message,
    );
  }
  return undefined;
}

const serverError = () =>
  new ApiError(500, ErrorType.Server, 'The server had an error processing your request.');

/** Every error in OpenAI's shape; an unexpected one is a 500 (for middleware outside Nest). */
export function toApiError(error: unknown): ApiError {
  return knownApiError(error) ?? serverError();
}

/** Answers `error` in OpenAI's shape (for middleware that runs outside Nest's filters). */
export function sendApiError(response: Response, error: ApiError): void {
  if (response.headersSent) {
    response.end();
    return;
  }
  for (const [name, value] of Object.entries(error.headers)) response.setHeader(name, value);
  // The rest of an oversize body is never read: close the connection instead of draining it.
  if (error.status === 413) response.setHeader('Connection', 'close');
  response.status(error.status).json(error.body);
}

/**
 * Every error a route raises leaves in OpenAI's shape: a Redis outage is a 503 the client may
 * retry (see {@link isRedisOutage}); anything unexpected is logged and answered 500.
 */
@Catch()
export class OpenAiExceptionFilter implements ExceptionFilter {
  constructor(
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly connections: RedisConnections,
  ) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<Response>();
    const error =
      knownApiError(exception) ??
      (isRedisOutage(exception, this.connections.commandsConnected)
        ? unavailable('The queue store (Redis) is unreachable; retry shortly.', 'redis_unavailable')
        : serverError());
    if (error.status >= 500) {
      this.logger.error(
        { err: exception, requestId: response.locals.requestId as unknown },
        'request failed',
      );
    }
    // Once a stream has started (SSE) the status cannot change: the response just ends.
    sendApiError(response, error);
  }
}
