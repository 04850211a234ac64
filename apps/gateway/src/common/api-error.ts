import { ErrorType, apiError, type ApiErrorBody } from '#contracts';

/**
 * An error answered in OpenAI's shape. Every failure a client can cause or observe is one of
 * these; anything else that escapes a handler is a bug and answers 500 `server_error`.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: ErrorType,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers, e.g. `Retry-After`. */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  get body(): ApiErrorBody {
    return apiError(this.type, this.message, {
      ...(this.param === null ? {} : { param: this.param }),
      ...(this.code === null ? {} : { code: this.code }),
    });
  }
}

export function invalidRequest(message: string, param: string | null = null, code?: string) {
  return new ApiError(400, ErrorType.InvalidRequest, message, param, code ?? null);
}

/** 404 for ids that do not exist and for other tenants' ids alike, so ids cannot be probed. */
export function notFound(what: string, id: string, param: string | null = null) {
  return new ApiError(404, ErrorType.InvalidRequest, `No such ${what}: '${id}'`, param);
}

export function modelNotFound(model: string) {
  return new ApiError(
    404,
    ErrorType.InvalidRequest,
    `The model '${model}' does not exist: no worker serves it (GET /v1/models lists the models).`,
    'model',
    'model_not_found',
  );
}

export function rateLimited(message: string, retryAfterSeconds: number, code: string) {
  return new ApiError(429, ErrorType.RateLimit, message, null, code, {
    'Retry-After': String(Math.max(1, Math.ceil(retryAfterSeconds))),
  });
}

export function unavailable(message: string, code: string, retryAfterSeconds = 5) {
  return new ApiError(503, ErrorType.ServiceUnavailable, message, null, code, {
    'Retry-After': String(retryAfterSeconds),
  });
}

export function payloadTooLarge(message: string, param: string | null = null) {
  return new ApiError(413, ErrorType.InvalidRequest, message, param, 'payload_too_large');
}

/** 500: the job failed on its worker (after its retries), or its stream is incomplete. */
export function jobFailed(message: string) {
  return new ApiError(
    500,
    ErrorType.Server,
    `The worker could not complete this request: ${message}`,
  );
}
