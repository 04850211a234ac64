import { z } from 'zod';
import { samplingSchema } from '#contracts';

const source = {
  model: z.string().min(1),
  /** Inline text; or `document_id` of an uploaded document. Exactly one of the two. */
  prompt: z.string().optional(),
  document_id: z.string().min(1).optional(),
};

export const jobCreateSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('generate'),
    ...source,
    ...samplingSchema.shape,
    n: z.number().int().min(1).max(16).optional(),
    state_id: z.string().min(1).optional(),
  }),
  z.strictObject({
    type: z.literal('score'),
    ...source,
    window_tokens: z.number().int().min(1).optional(),
    token_logprobs: z.boolean().optional(),
  }),
  z.strictObject({
    type: z.literal('digest'),
    ...source,
    state_id: z.string().min(1).optional(),
    state_ttl_seconds: z
      .number()
      .int()
      .min(1)
      .max(30 * 24 * 3600)
      .optional(),
  }),
]);
export type JobCreateRequest = z.infer<typeof jobCreateSchema>;
