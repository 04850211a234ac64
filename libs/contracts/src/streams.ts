import { z } from 'zod';
import { digestResultSchema, finishReasonSchema, scoreResultSchema, usageSchema } from './jobs.js';

/**
 * Entries of a job's output stream (`RedisKeys.jobStream`), appended by the worker that holds
 * the job (DESIGN.md decision 4). Every token carries its choice and index: a worker that resumes
 * the job after a crash may append a token again, and readers keep the first entry per
 * (choice, index). Redis stream fields are flat strings; `encodeStreamEvent` and
 * `decodeStreamEvent` are the only code that knows the field names.
 */
export const streamEventSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('token'),
    choice: z.number().int().min(0),
    index: z.number().int().min(0),
    token: z.number().int().min(0),
    /** Text this token completes (may be '' while a multi-byte character is incomplete). */
    text: z.string(),
    logprob: z.number(),
    top: z.array(z.strictObject({ text: z.string(), logprob: z.number() })).optional(),
  }),
  z.strictObject({
    type: z.literal('choice-end'),
    choice: z.number().int().min(0),
    finishReason: finishReasonSchema,
    /** Text held back until the end (a possible stop-string start that was not one). */
    text: z.string(),
    /**
     * The sequence's prompt tokens, and how many of them came from a cached or saved state: a
     * retried job whose choices had all ended reports (and charges) them from here.
     */
    promptTokens: z.number().int().min(0),
    cachedTokens: z.number().int().min(0),
  }),
  z.strictObject({
    type: z.literal('progress'),
    promptTokensDone: z.number().int().min(0),
    promptTokensTotal: z.number().int().min(0),
  }),
  /**
   * The job finished. Everything a reader needs is in the stream: a generate job's text is its
   * tokens and choice ends, and this entry carries the job's usage and, for score and digest
   * jobs, the result — inline, or under `resultKey` (a Redis string of JSON, kept as long as the
   * stream) when it is too large for a stream entry (per-token log-probs of a long document).
   */
  z.strictObject({
    type: z.literal('done'),
    usage: usageSchema,
    result: z.union([scoreResultSchema, digestResultSchema]).optional(),
    resultKey: z.string().optional(),
  }),
  z.strictObject({ type: z.literal('failed'), message: z.string() }),
]);
export type StreamEvent = z.infer<typeof streamEventSchema>;

/** Flat field/value pairs for XADD. */
export function encodeStreamEvent(event: StreamEvent): string[] {
  return ['e', JSON.stringify(event)];
}

/** Parses the fields of one stream entry as XREAD returns them. */
export function decodeStreamEvent(fields: readonly string[]): StreamEvent {
  const index = fields.indexOf('e');
  const raw = index === -1 ? undefined : fields[index + 1];
  if (raw === undefined) throw new Error('stream entry has no event field');
  return streamEventSchema.parse(JSON.parse(raw));
}
