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
 * The one priority scale, end to end (lower runs first): interactive requests before batch lines
 * before long-document work. BullMQ orders a model queue by it, and the engine orders its
 * prefills by the same value. A job without a priority (another producer's) counts as
 * interactive.
 */
export const JobPriority = {
  Interactive: 1,
  Batch: 2,
  Document: 3,
} as const satisfies Record<string, number>;
export type JobPriority = (typeof JobPriority)[keyof typeof JobPriority];

/** The scale's value of a BullMQ priority; unknown or missing values count as interactive. */
export function jobPriorityOf(priority: number | undefined): JobPriority {
  return (Object.values(JobPriority) as number[]).includes(priority ?? 0)
    ? (priority as JobPriority)
    : JobPriority.Interactive;
}

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
export type TextSource = z.infer<typeof textSourceSchema>;

/** Fields every job carries. */
const jobBase = {
  model: modelIdSchema,
  input: textSourceSchema,
  /** The tenant (API key owner) that submitted the job; other tenants never see it. */
  owner: z.string().min(1),
};

export const generateJobSchema = z.strictObject({
  ...jobBase,
  sampling: samplingSchema,
  /** Number of choices (OpenAI `n`), each sampled independently from the same prompt. */
  n: z.number().int().min(1).max(16).default(1),
  /** Continue from a saved state: only `input` is processed on top of it. */
  stateId: z.string().min(1).optional(),
});

export const scoreJobSchema = z.strictObject({
  ...jobBase,
  /** Also report perplexity per window of this many tokens. */
  windowTokens: z.number().int().min(1).optional(),
  /** Return every token's log-probability (large for long texts). @defaultValue false */
  tokenLogprobs: z.boolean().default(false),
});

export const digestJobSchema = z.strictObject({
  ...jobBase,
  /** Continue an existing saved state instead of starting from nothing. */
  stateId: z.string().min(1).optional(),
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
/** What producers pass (defaults not yet applied). */
export type JobPayloadInput<N extends JobName> = z.input<(typeof jobPayloadSchemas)[N]>;

const tokenLogprobSchema = z.strictObject({ text: z.string(), logprob: z.number() });

export const finishReasonSchema = z.enum(['stop', 'length', 'cancelled']);
export type FinishReason = z.infer<typeof finishReasonSchema>;

export const usageSchema = z.strictObject({
  promptTokens: z.number().int().min(0),
  completionTokens: z.number().int().min(0),
  /** Prompt tokens whose state came from the prefix cache or a saved state. */
  cachedTokens: z.number().int().min(0),
});
export type Usage = z.infer<typeof usageSchema>;

export const generateResultSchema = z.strictObject({
  choices: z.array(
    z.strictObject({
      index: z.number().int().min(0),
      text: z.string(),
      finishReason: finishReasonSchema,
      /** Per generated token, when the job asked for logprobs. */
      logprobs: z
        .array(
          z.strictObject({
            text: z.string(),
            logprob: z.number(),
            top: z.array(tokenLogprobSchema),
          }),
        )
        .optional(),
    }),
  ),
  usage: usageSchema,
});
export type GenerateResult = z.infer<typeof generateResultSchema>;

export const scoreResultSchema = z.strictObject({
  /** Tokens scored (every token of the text; the first is predicted from end-of-text). */
  tokens: z.number().int().min(0),
  totalNll: z.number(),
  perplexity: z.number(),
  windows: z.array(
    z.strictObject({
      start: z.number().int(),
      end: z.number().int(),
      nll: z.number(),
      perplexity: z.number(),
    }),
  ),
  tokenLogprobs: z.array(z.number()).optional(),
});
export type ScoreResult = z.infer<typeof scoreResultSchema>;

export const digestResultSchema = z.strictObject({
  stateId: z.string(),
  model: modelIdSchema,
  /** Tokens processed into the state, the saved state's own included. */
  position: z.number().int().min(0),
  expiresAt: z.iso.datetime(),
});
export type DigestResult = z.infer<typeof digestResultSchema>;

export const jobResultSchemas = {
  [JobName.Generate]: generateResultSchema,
  [JobName.Score]: scoreResultSchema,
  [JobName.Digest]: digestResultSchema,
} as const;
export type JobResult<N extends JobName> = z.infer<(typeof jobResultSchemas)[N]>;

/** What a worker reports in BullMQ's job progress while it holds the job. */
export const jobProgressSchema = z.strictObject({
  phase: z.enum(['prefill', 'decode', 'finishing']),
  /** Input tokens processed so far / in total. */
  promptTokensDone: z.number().int().min(0),
  promptTokensTotal: z.number().int().min(0),
  /** Output tokens generated so far (all choices). */
  completionTokens: z.number().int().min(0),
  worker: z.strictObject({ id: z.string(), host: z.string(), pid: z.number().int() }),
  updatedAt: z.iso.datetime(),
});
export type JobProgress = z.infer<typeof jobProgressSchema>;
