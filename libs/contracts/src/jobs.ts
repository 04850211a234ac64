import { z } from 'zod';

/**
 * Queue and job names, in one place. Each served model has its own BullMQ queue so that a job for
 * a model no live worker serves simply waits until such a worker starts.
 */
export function modelQueueName(modelId: string): string {
  return `model.${modelId}`;
}

/** Model ids are file-system and queue-name safe. */
export const modelIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'letters, digits, ".", "_" and "-" (max 128)');

export const JobName = {
  /** Continue a prompt (or a saved state) with sampled tokens. */
  Generate: 'generate',
  /** Per-token log-probabilities of a text: total NLL, perplexity, windowed perplexity. */
  Score: 'score',
  /** Process a text and keep the resulting recurrent state for later requests. */
  Digest: 'digest',
} as const;
export type JobName = (typeof JobName)[keyof typeof JobName];

/**
 * BullMQ priorities (lower runs first): interactive requests before batch lines before
 * long-document work.
 */
export const JobPriority = {
  Interactive: 1,
  Batch: 5,
  Document: 10,
} as const satisfies Record<string, number>;

export const samplingSchema = z.strictObject({
  /** @defaultValue 1; 0 means greedy. */
  temperature: z.number().min(0).max(2).default(1),
  top_p: z.number().gt(0).max(1).default(1),
  /** 0 disables top-k. */
  top_k: z.number().int().min(0).default(0),
  min_p: z.number().min(0).max(1).default(0),
  presence_penalty: z.number().min(-2).max(2).default(0),
  frequency_penalty: z.number().min(-2).max(2).default(0),
  repetition_penalty: z.number().gt(0).max(10).default(1),
  logit_bias: z.record(z.string().regex(/^\d+$/), z.number().min(-100).max(100)).default({}),
  stop: z.array(z.string().min(1)).max(4).default([]),
  /** @defaultValue 16, as in OpenAI's completions API. */
  max_tokens: z.number().int().min(1).default(16),
  /** Number of alternatives returned with each token's log-probability; absent means none. */
  logprobs: z.number().int().min(0).max(20).optional(),
  seed: z.number().int().optional(),
});
export type Sampling = z.infer<typeof samplingSchema>;

/** The text a job reads: inline, or an uploaded document. */
export const textSourceSchema = z.union([
  z.strictObject({ text: z.string() }),
  z.strictObject({ documentId: z.string().min(1) }),
]);

export const generateJobSchema = z.strictObject({
  model: modelIdSchema,
  input: textSourceSchema,
  sampling: samplingSchema,
  /** Continue from a saved state: only `input` is processed on top of it. */
  stateId: z.string().min(1).optional(),
});

export const scoreJobSchema = z.strictObject({
  model: modelIdSchema,
  input: textSourceSchema,
  /** Also report perplexity per window of this many tokens. */
  windowTokens: z.number().int().min(1).optional(),
});

export const digestJobSchema = z.strictObject({
  model: modelIdSchema,
  input: textSourceSchema,
  /** How long the produced state is kept. @defaultValue 3600 */
  stateTtlSeconds: z
    .number()
    .int()
    .min(1)
    .max(30 * 24 * 3600)
    .default(3600),
});

export const jobPayloadSchemas = {
  [JobName.Generate]: generateJobSchema,
  [JobName.Score]: scoreJobSchema,
  [JobName.Digest]: digestJobSchema,
} as const;
export type JobPayload<N extends JobName> = z.infer<(typeof jobPayloadSchemas)[N]>;

export const generateResultSchema = z.strictObject({
  text: z.string(),
  finishReason: z.enum(['stop', 'length', 'cancelled']),
  promptTokens: z.number().int().min(0),
  completionTokens: z.number().int().min(0),
  cachedTokens: z.number().int().min(0),
});

export const scoreResultSchema = z.strictObject({
  tokens: z.number().int().min(0),
  totalNll: z.number(),
  perplexity: z.number(),
  windows: z.array(
    z.strictObject({ start: z.number().int(), end: z.number().int(), perplexity: z.number() }),
  ),
});

export const digestResultSchema = z.strictObject({
  stateId: z.string(),
  position: z.number().int().min(0),
});

export const jobResultSchemas = {
  [JobName.Generate]: generateResultSchema,
  [JobName.Score]: scoreResultSchema,
  [JobName.Digest]: digestResultSchema,
} as const;
export type JobResult<N extends JobName> = z.infer<(typeof jobResultSchemas)[N]>;
