import express, { type NextFunction, type Request, type Response } from 'express';
import { sendApiError, toApiError } from './exception-filter.js';

/** Routes whose body is streamed to Redis by the route itself, never parsed or buffered. */
const STREAMED_UPLOADS = /^\/v1\/(documents|files)\/?$/;

/**
 * Parses JSON bodies up to `limitBytes` (MAX_BODY_BYTES); malformed or oversize bodies are
 * answered in OpenAI's error shape (400 `invalid_json`, 413 `payload_too_large`).
 */
export function jsonBody(limitBytes: number) {
  const parse = express.json({ limit: limitBytes });
  return (request: Request, response: Response, next: NextFunction): void => {
    if (request.method === 'POST' && STREAMED_UPLOADS.test(request.path)) {
      next();
      return;
    }
    // Express's Request is an IncomingMessage built by Node's HTTP server, as the parser expects.
    // eslint-disable-next-line @typescript-eslint/no-unsafe-class-instance-assignment
    parse(request, response, (error?: unknown) => {
      if (error === undefined || error === null) next();
      else sendApiError(response, toApiError(error));
    });
  };
}
