import { z } from 'zod';
import {
  batchStatusSchema,
  filePurposeSchema,
  generateResultSchema,
  jobProgressSchema,
  scoreResultSchema,
} from '#contracts';

/**
 * The bodies the routes answer with, as zod schemas: `/docs` publishes them (as JSON Schema) and
 * the presenters are typed by them, so the documentation cannot drift from the code unnoticed.
 */

const unixSeconds = z.number().int();

/** OpenAI's error shape: every failure, whatever the route. */
export const errorBodySchema = z.strictObject({
  error: z.strictObject({
    message: z.string(),
    type: z.string(),
    param: z.string().nullable(),
    code: z.string().nullable(),
  }),
});

/** OpenAI's cursor-paginated list. */
export const pageSchema = <T extends z.ZodType>(item: T) =>
  z.object({
    object: z.literal('list'),
    data: z.array(item),
    first_id: z.string().nullable(),
    last_id: z.string().nullable(),
    has_more: z.boolean(),
  });

/** What a DELETE answers. */
export const deletedSchema = <K extends string>(object: K) =>
  z.object({ id: z.string(), object: z.literal(object), deleted: z.literal(true) });

export const usageBodySchema = z.object({
  prompt_tokens: z.number().int(),
  completion_tokens: z.number().int(),
  total_tokens: z.number().int(),
  prompt_tokens_details: z.object({ cached_tokens: z.number().int() }),
});

const openAiFinishReasonSchema = z.enum(['stop', 'length']);

export const completionLogprobsSchema = z.object({
  tokens: z.array(z.string()),
  token_logprobs: z.array(z.number()),
  top_logprobs: z.array(z.record(z.string(), z.number())),
  text_offset: z.array(z.number().int()),
});

const chatTokenLogprob = z.object({
  token: z.string(),
  logprob: z.number(),
  bytes: z.array(z.number().int()),
});
export const chatLogprobsSchema = z.object({
  content: z.array(chatTokenLogprob.extend({ top_logprobs: z.array(chatTokenLogprob) })),
  refusal: z.null(),
});

export const completionBodySchema = z.object({
  id: z.string(),
  object: z.literal('text_completion'),
  created: unixSeconds,
  model: z.string(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      text: z.string(),
      logprobs: completionLogprobsSchema.nullable(),
      finish_reason: openAiFinishReasonSchema,
    }),
  ),
  usage: usageBodySchema,
});

export type CompletionBody = z.output<typeof completionBodySchema>;

export const chatCompletionBodySchema = z.object({
  id: z.string(),
  object: z.literal('chat.completion'),
  created: unixSeconds,
  model: z.string(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      message: z.object({
        role: z.literal('assistant'),
        content: z.string(),
        refusal: z.null(),
      }),
      logprobs: chatLogprobsSchema.nullable(),
      finish_reason: openAiFinishReasonSchema,
    }),
  ),
  usage: usageBodySchema,
});

export type ChatCompletionBody = z.output<typeof chatCompletionBodySchema>;

export const modelBodySchema = z.object({
  id: z.string(),
  object: z.literal('model'),
  created: unixSeconds,
  owned_by: z.string(),
});
export type ModelBody = z.output<typeof modelBodySchema>;
export const modelListBodySchema = z.object({
  object: z.literal('list'),
  data: z.array(modelBodySchema),
});

export const fileBodySchema = z.object({
  id: z.string(),
  object: z.literal('file'),
  bytes: z.number().int(),
  created_at: unixSeconds,
  filename: z.string(),
  purpose: filePurposeSchema,
  status: z.literal('processed'),
  expires_at: z.null(),
  status_details: z.null(),
});
export type FileBody = z.output<typeof fileBodySchema>;

const optionalTime = unixSeconds.nullable();
export const batchBodySchema = z.object({
  id: z.string(),
  object: z.literal('batch'),
  endpoint: z.enum(['/v1/completions', '/v1/chat/completions']),
  errors: z.object({ object: z.literal('list'), data: z.array(z.unknown()) }).nullable(),
  input_file_id: z.string(),
  completion_window: z.string(),
  status: batchStatusSchema,
  output_file_id: z.string().nullable(),
  error_file_id: z.string().nullable(),
  created_at: unixSeconds,
  in_progress_at: optionalTime,
  expires_at: unixSeconds,
  finalizing_at: optionalTime,
  completed_at: optionalTime,
  failed_at: optionalTime,
  expired_at: optionalTime,
  cancelling_at: optionalTime,
  cancelled_at: optionalTime,
  request_counts: z.object({
    total: z.number().int(),
    completed: z.number().int(),
    failed: z.number().int(),
  }),
  metadata: z.record(z.string(), z.string()).nullable(),
  /** Once finalized. */
  usage: z
    .object({
      input_tokens: z.number().int(),
      input_tokens_details: z.object({ cached_tokens: z.number().int() }),
      output_tokens: z.number().int(),
      output_tokens_details: z.object({ reasoning_tokens: z.number().int() }),
      total_tokens: z.number().int(),
    })
    .optional(),
});

const generateChoice = generateResultSchema.shape.choices.element;
export const jobResultBodySchemas = {
  generate: z.object({
    choices: z.array(
      z.object({
        index: z.number().int(),
        text: z.string(),
        finish_reason: generateChoice.shape.finishReason,
        logprobs: generateChoice.shape.logprobs.unwrap().nullable(),
      }),
    ),
    usage: usageBodySchema,
  }),
  score: z.object({
    tokens: z.number().int(),
    total_nll: z.number(),
    perplexity: z.number(),
    windows: scoreResultSchema.shape.windows,
    token_logprobs: scoreResultSchema.shape.tokenLogprobs,
  }),
  digest: z.object({
    state_id: z.string(),
    model: z.string(),
    position: z.number().int(),
    expires_at: unixSeconds,
  }),
};

export const jobBodySchema = z.object({
  id: z.string(),
  object: z.literal('job'),
  type: z.enum(['generate', 'score', 'digest']),
  model: z.string(),
  status: z.enum(['queued', 'running', 'completed', 'failed', 'cancelled']),
  created_at: unixSeconds,
  started_at: optionalTime,
  finished_at: optionalTime,
  progress: z
    .object({
      phase: jobProgressSchema.shape.phase,
      prompt_tokens_done: z.number().int(),
      prompt_tokens_total: z.number().int(),
      completion_tokens: z.number().int(),
    })
    .nullable(),
  eta_seconds: z.number().int().nullable(),
  worker: jobProgressSchema.shape.worker.nullable(),
  result: z
    .union([jobResultBodySchemas.generate, jobResultBodySchemas.score, jobResultBodySchemas.digest])
    .nullable(),
  error: z.object({ message: z.string() }).nullable(),
});
export type JobBody = z.output<typeof jobBodySchema>;
export type JobResultBody = NonNullable<JobBody['result']>;

export const stateBodySchema = z.object({
  id: z.string(),
  object: z.literal('state'),
  model: z.string(),
  position: z.number().int(),
  created_at: unixSeconds,
  expires_at: unixSeconds,
});
export type StateBody = z.output<typeof stateBodySchema>;

export const documentBodySchema = z.object({
  id: z.string(),
  object: z.literal('document'),
  bytes: z.number().int(),
  created_at: unixSeconds,
  filename: z.string(),
});
export type DocumentBody = z.output<typeof documentBodySchema>;
