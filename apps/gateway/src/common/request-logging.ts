import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '#cluster';

/** Accepted from clients when it is a plain token; otherwise a fresh UUID is used. */
const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Gives every request an id (the client's `X-Request-Id` when sane), echoes it in the response
 * and logs one JSON line per request when the response is finished or the client goes away.
 */
export function requestLogging(logger: Logger) {
  return (request: Request, response: Response, next: NextFunction): void => {
    const offered = request.header('x-request-id');
    const requestId =
      offered !== undefined && CLIENT_REQUEST_ID.test(offered) ? offered : randomUUID();
    response.setHeader('X-Request-Id', requestId);
    response.locals.requestId = requestId;
    const started = performance.now();
    response.on('close', () => {
      logger.info(
        {
          requestId,
          method: request.method,
          path: request.path,
          status: response.statusCode,
          durationMs: Math.round((performance.now() - started) * 10) / 10,
          completed: response.writableFinished,
        },
        'request',
      );
    });
    next();
  };
}
