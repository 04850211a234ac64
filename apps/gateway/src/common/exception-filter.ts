import { type ArgumentsHost, Catch, type ExceptionFilter, HttpException } from '@nestjs/common';
import type { Response } from 'express';
import { ErrorType } from '#contracts';
import type { Logger } from '#cluster';
import { ApiError } from './api-error.js';

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

/** ioredis raises these while Redis is unreachable (the gateway's clients fail fast). */
function isRedisOutage(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return (
    error.name === 'MaxRetriesPerRequestError' ||
    /Connection is closed|Stream isn't writeable|ECONNREFUSED|enableOfflineQueue/.test(
      error.message,
    )
  );
}

/**
 * Every error leaves in OpenAI's shape — ours, Nest's own (unknown routes, bad methods), the body
 * parsers' (malformed JSON, oversize bodies) and unexpected ones (logged, answered 500).
 */
export function toApiError(error: unknown): ApiError {
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
  if (isRedisOutage(error)) {
    return new ApiError(
      503,
      ErrorType.ServiceUnavailable,
      'The queue store (Redis) is unreachable; retry shortly.',
      null,
      'redis_unavailable',
      { 'Retry-After': '5' },
    );
  }
  return new ApiError(500, ErrorType.Server, 'The server had an error processing your request.');
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

@Catch()
export class OpenAiExceptionFilter implements ExceptionFilter {
  constructor(private readonly logger: Logger) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<Response>();
    const error = toApiError(exception);
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
