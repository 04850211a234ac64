/**
 * Types of `redis-errors`, the error classes ioredis raises (the package ships no types). Only
 * what the gateway uses is declared. It is CommonJS without detectable named exports: import
 * its default export.
 */
declare module 'redis-errors' {
  type ErrorClass = new (message?: string) => Error;
  const errors: {
    /**
     * A command that was aborted without an answer: its connection closed, or it ran out of
     * retries (ioredis's `MaxRetriesPerRequestError` is one).
     */
    AbortError: ErrorClass;
    /** An error reply from the server (`ERR …`, `WRONGTYPE …`): Redis answered. */
    ReplyError: ErrorClass;
  };
  export default errors;
}
