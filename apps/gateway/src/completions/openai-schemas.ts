import { z } from 'zod';

/**
 * Request bodies of `/v1/completions` and `/v1/chat/completions`, field by field as in OpenAI's
 * API reference (nullable where OpenAI's are). Fields this cluster cannot honour are refused with
 * a 400 that names them rather than silently ignored; fields that only matter to OpenAI's own
 * service (`user`, `store`, `metadata`, …) are accepted and ignored. Extensions: `top_k`,
 * `min_p`, `repetition_penalty` (sampler) and `state_id` (continue from a saved state).
 */

const nullable = <T extends z.ZodType>(schema: T) => schema.nullable().optional();

const streamOptionsSchema = z.strictObject({
  include_usage: nullable(z.boolean()),
  /** OpenAI pads chunks against side channels; this gateway never does, so it is ignored. */
  include_obfuscation: nullable(z.boolean()),
});

const samplerFields = {
  model: z.string().min(1),
  temperature: nullable(z.number().min(0).max(2)),
  top_p: nullable(z.number().gt(0, 'must be greater than 0').max(1)),
  n: nullable(z.number().int().min(1).max(16)),
  presence_penalty: nullable(z.number().min(-2).max(2)),
  frequency_penalty: nullable(z.number().min(-2).max(2)),
  logit_bias: nullable(
    z.record(z.string().regex(/^\d+$/, 'keys are token ids'), z.number().min(-100).max(100)),
  ),
  seed: nullable(z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER)),
  stop: nullable(z.union([z.string().min(1), z.array(z.string().min(1)).max(4)])),
  max_tokens: nullable(z.number().int().min(1).max(1_000_000)),
  stream: nullable(z.boolean()),
  stream_options: nullable(streamOptionsSchema),
  user: z.string().optional(),
  top_k: nullable(z.number().int().min(0).max(1_000_000)),
  min_p: nullable(z.number().min(0).max(1)),
  repetition_penalty: nullable(z.number().gt(0).max(10)),
  state_id: nullable(z.string().min(1).max(200)),
};

export const completionRequestSchema = z.strictObject({
  ...samplerFields,
  prompt: z.union([
    z.string(),
    z.array(z.string()),
    z.array(z.number()),
    z.array(z.array(z.number())),
  ]),
  logprobs: nullable(z.number().int().min(0).max(20)),
  echo: nullable(z.boolean()),
  best_of: nullable(z.number().int().min(1).max(20)),
  suffix: nullable(z.string()),
});
export type CompletionRequest = z.infer<typeof completionRequestSchema>;

const textPartSchema = z.object({ type: z.string(), text: z.string().optional() });

const messageSchema = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z.union([z.string(), z.array(textPartSchema), z.null()]).optional(),
  name: z.string().optional(),
});
export type ChatMessage = z.infer<typeof messageSchema>;

export const chatRequestSchema = z.strictObject({
  ...samplerFields,
  messages: z.array(messageSchema).min(1),
  logprobs: nullable(z.boolean()),
  top_logprobs: nullable(z.number().int().min(0).max(20)),
  max_completion_tokens: nullable(z.number().int().min(1).max(1_000_000)),
  // Accepted when they ask for nothing this cluster lacks (checked in unsupportedChatField).
  tools: nullable(z.array(z.unknown())),
  tool_choice: z.unknown().optional(),
  functions: nullable(z.array(z.unknown())),
  function_call: z.unknown().optional(),
  parallel_tool_calls: nullable(z.boolean()),
  response_format: nullable(z.object({ type: z.string() })),
  modalities: nullable(z.array(z.string())),
  audio: z.unknown().optional(),
  prediction: z.unknown().optional(),
  web_search_options: z.unknown().optional(),
  // Only meaningful to OpenAI's own service: accepted and ignored.
  metadata: nullable(z.record(z.string(), z.string())),
  store: nullable(z.boolean()),
  service_tier: nullable(z.string()),
  reasoning_effort: nullable(z.string()),
  verbosity: nullable(z.string()),
  safety_identifier: nullable(z.string()),
  prompt_cache_key: nullable(z.string()),
  prompt_cache_retention: nullable(z.string()),
});
export type ChatRequest = z.infer<typeof chatRequestSchema>;

/** The first field this cluster cannot honour, as [param, reason]. */
export function unsupportedCompletionField(
  request: CompletionRequest,
): [string, string] | undefined {
  if (typeof request.prompt !== 'string') {
    if (request.prompt.length === 0) return ['prompt', 'must not be empty'];
    if (request.prompt.some((item) => typeof item !== 'string')) {
      return ['prompt', 'token-id prompts are not supported; send text'];
    }
    if (request.prompt.length > 1) {
      return [
        'prompt',
        'several prompts in one request are not supported; send one request per prompt or use /v1/batches',
      ];
    }
  }
  if (request.echo === true) return ['echo', 'echo is not supported'];
  if ((request.best_of ?? 1) > 1) return ['best_of', 'best_of greater than 1 is not supported'];
  if (request.suffix !== undefined && request.suffix !== null) {
    return ['suffix', 'suffix (insertion) is not supported'];
  }
  return streamOptionsProblem(request);
}

function streamOptionsProblem(request: {
  stream?: boolean | null | undefined;
  stream_options?: unknown;
}): [string, string] | undefined {
  if (
    request.stream_options !== undefined &&
    request.stream_options !== null &&
    request.stream !== true
  ) {
    return ['stream_options', 'stream_options is only allowed when stream is true'];
  }
  return undefined;
}

export function unsupportedChatField(request: ChatRequest): [string, string] | undefined {
  if ((request.tools?.length ?? 0) > 0) return ['tools', 'tool calling is not supported'];
  if ((request.functions?.length ?? 0) > 0)
    return ['functions', 'function calling is not supported'];
  if (request.tool_choice !== undefined && request.tool_choice !== 'none') {
    return ['tool_choice', 'tool calling is not supported'];
  }
  if (request.function_call !== undefined && request.function_call !== 'none') {
    return ['function_call', 'function calling is not supported'];
  }
  if (request.response_format && request.response_format.type !== 'text') {
    return ['response_format', "only {'type': 'text'} is supported"];
  }
  if (request.modalities?.some((modality) => modality !== 'text')) {
    return ['modalities', "only 'text' is supported"];
  }
  for (const field of ['audio', 'prediction', 'web_search_options'] as const) {
    if (request[field] !== undefined && request[field] !== null) {
      return [field, `${field} is not supported`];
    }
  }
  if (
    request.top_logprobs !== undefined &&
    request.top_logprobs !== null &&
    request.logprobs !== true
  ) {
    return ['top_logprobs', 'top_logprobs requires logprobs to be true'];
  }
  for (const [index, message] of request.messages.entries()) {
    if (Array.isArray(message.content)) {
      for (const [part, content] of message.content.entries()) {
        if (content.type !== 'text' || content.text === undefined) {
          return [`messages[${index}].content[${part}]`, 'only text content parts are supported'];
        }
      }
    } else if ((message.content ?? null) === null && message.role !== 'assistant') {
      return [`messages[${index}].content`, 'content is required for this role'];
    }
  }
  return streamOptionsProblem(request);
}

/** A message's text: its content string, or its text parts joined; none for an empty reply. */
export function messageText(message: ChatMessage): string {
  return typeof message.content === 'string'
    ? message.content
    : (message.content ?? []).map((part) => part.text ?? '').join('');
}

/**
 * A message's role as chat templates know it: OpenAI's `developer` messages are what models
 * (and Hugging Face chat templates) call `system`.
 */
export function templateRole(message: ChatMessage): string {
  return message.role === 'developer' ? 'system' : message.role;
}

/**
 * The default chat template, used when a model bundle brings none: each message as
 * `<|role|>\ncontent\n`, then `<|assistant|>\n` for the reply.
 */
export function renderChat(messages: readonly ChatMessage[]): string {
  return `${messages.map((message) => `<|${templateRole(message)}|>\n${messageText(message)}\n`).join('')}<|assistant|>\n`;
}
