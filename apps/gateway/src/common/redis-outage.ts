import redisErrors from 'redis-errors';

/**
 * Node's system error codes (`error.code`) that mean a host or port could not be reached or the
 * connection broke: how a connection attempt to a Redis that is down fails.
 */
const CONNECTION_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/** Redis answered with an error reply: the command's problem, not an outage. */
const isErrorReply = (error: Error): boolean => error instanceof redisErrors.ReplyError;

/** ioredis gave up on the command without an answer. */
const isAborted = (error: Error): boolean => error instanceof redisErrors.AbortError;

function hasConnectionErrorCode(error: Error): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code !== undefined && CONNECTION_ERROR_CODES.has(code);
}

/**
 * Whether `error` means Redis is unreachable, so that the request deserves a 503 and a retry
 * rather than a 500:
 * - ioredis aborted the command (`AbortError`: its connection closed, or it used up its retries
 *   as `MaxRetriesPerRequestError`);
 * - a connection attempt failed with a system error (`ECONNREFUSED`, `ETIMEDOUT`, …);
 * - or the command client is not connected right now (`commandsConnected` false): a fail-fast
 *   client rejects commands while it reconnects with plain `Error`s (connection closed, stream
 *   not writeable) that no class tells apart, but the client's own state does.
 */
export function isRedisOutage(error: unknown, commandsConnected: boolean): boolean {
  if (!(error instanceof Error)) return false;
  if (isErrorReply(error)) return false;
  return isAborted(error) || hasConnectionErrorCode(error) || !commandsConnected;
}
