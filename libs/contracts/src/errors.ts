/**
 * Error bodies follow OpenAI's shape so that OpenAI clients surface our messages unchanged:
 * `{"error": {"message", "type", "param", "code"}}`.
 */
export const ErrorType = {
  InvalidRequest: 'invalid_request_error',
  Authentication: 'authentication_error',
  NotFound: 'not_found_error',
  RateLimit: 'rate_limit_error',
  ServiceUnavailable: 'service_unavailable',
  Server: 'server_error',
} as const;
export type ErrorType = (typeof ErrorType)[keyof typeof ErrorType];

export interface ApiErrorBody {
  error: {
    message: string;
    type: ErrorType;
    param: string | null;
    code: string | null;
  };
}

export function apiError(
  type: ErrorType,
  message: string,
  options: { param?: string; code?: string } = {},
): ApiErrorBody {
  return {
    error: { message, type, param: options.param ?? null, code: options.code ?? null },
  };
}
