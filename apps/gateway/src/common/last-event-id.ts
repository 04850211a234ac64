import { invalidRequest } from './api-error.js';

/** Redis stream entry ids (`<ms>-<seq>`) are the SSE event ids. */
const STREAM_ENTRY_ID = /^\d{1,20}-\d{1,20}$/;

/** The position to resume a stream from: after the `Last-Event-ID`, or '0' (the start). */
export function lastEventId(header: string | undefined): string {
  if (header === undefined || header === '') return '0';
  if (!STREAM_ENTRY_ID.test(header)) {
    throw invalidRequest(
      `Invalid Last-Event-ID '${header}': expected an event id from this stream.`,
      'Last-Event-ID',
    );
  }
  return header;
}
