import { modelIdSchema, type JobPayloadInput } from '#contracts';
import { invalidRequest, modelNotFound } from '../common/api-error.js';
import { parseRequest } from '../common/validation.js';
import type { ChatPrompts } from './chat-template.js';
import {
  chatRequestSchema,
  type ChatRequest,
  type CompletionRequest,
  completionRequestSchema,
  unsupportedChatField,
  unsupportedCompletionField,
} from './openai-schemas.js';

/** Chat requests without a token limit get this many. @defaultValue 256 */
export const CHAT_DEFAULT_MAX_TOKENS = 256;

export type CompletionKind = 'completion' | 'chat';

/** An OpenAI request turned into a generate job. */
export interface MappedRequest {
  model: string;
  stream: boolean;
  includeUsage: boolean;
  logprobs: boolean;
  n: number;
  maxTokens: number;
  stateId: string | undefined;
  payload: JobPayloadInput<'generate'>;
}

type Present<T> = Exclude<T, null | undefined>;

/** `{key: value}` when value is present (not null/undefined), else `{}`. */
function given<K extends string, V>(key: K, value: V): Partial<Record<K, Present<V>>> {
  return value === null || value === undefined
    ? {}
    : ({ [key]: value } as Partial<Record<K, Present<V>>>);
}

function assertModelId(model: string): void {
  if (!modelIdSchema.safeParse(model).success) throw modelNotFound(model);
}

/**
 * Validates an OpenAI completion or chat request body and maps it to a generate job for
 * `tenant`, rendering chat messages with the model's chat template. Throws a 400 naming the
 * offending parameter, or 404 `model_not_found` for a model id no worker could ever serve.
 * `beforeRender` runs once the request is valid and before the template is read: a synchronous
 * request waits there for a live worker, whose start publishes the template it renders with.
 */
export async function mapRequest(
  kind: CompletionKind,
  body: unknown,
  tenant: string,
  chatPrompts: ChatPrompts,
  beforeRender: (model: string) => Promise<void> = async () => {
    // Batch lines do not wait: they are checked against the model's current template.
  },
): Promise<MappedRequest> {
  let common: ChatRequest | CompletionRequest;
  let text: string;
  let maxTokens: number;
  let logprobs: number | undefined;
  if (kind === 'chat') {
    const request = parseRequest(chatRequestSchema, body);
    const problem = unsupportedChatField(request);
    if (problem)
      throw invalidRequest(`Invalid value for '${problem[0]}': ${problem[1]}.`, problem[0]);
    // Checked before the model's chat template is looked up under its id.
    assertModelId(request.model);
    await beforeRender(request.model);
    text = await chatPrompts.render(request.model, request.messages);
    maxTokens = request.max_completion_tokens ?? request.max_tokens ?? CHAT_DEFAULT_MAX_TOKENS;
    logprobs = request.logprobs === true ? (request.top_logprobs ?? 0) : undefined;
    common = request;
  } else {
    const request = parseRequest(completionRequestSchema, body);
    const problem = unsupportedCompletionField(request);
    if (problem)
      throw invalidRequest(`Invalid value for '${problem[0]}': ${problem[1]}.`, problem[0]);
    assertModelId(request.model);
    await beforeRender(request.model);
    text = typeof request.prompt === 'string' ? request.prompt : String(request.prompt[0]);
    // OpenAI's default for the legacy completions endpoint.
    maxTokens = request.max_tokens ?? 16;
    logprobs = request.logprobs ?? undefined;
    common = request;
  }
  const stop = common.stop === null || common.stop === undefined ? [] : [common.stop].flat();
  const n = common.n ?? 1;
  const stateId = common.state_id ?? undefined;
  return {
    model: common.model,
    stream: common.stream === true,
    includeUsage: common.stream_options?.include_usage === true,
    logprobs: logprobs !== undefined,
    n,
    maxTokens,
    stateId,
    payload: {
      model: common.model,
      input: { text },
      owner: tenant,
      n,
      ...given('stateId', stateId),
      sampling: {
        max_tokens: maxTokens,
        stop,
        ...given('temperature', common.temperature),
        ...given('top_p', common.top_p),
        ...given('top_k', common.top_k),
        ...given('min_p', common.min_p),
        ...given('presence_penalty', common.presence_penalty),
        ...given('frequency_penalty', common.frequency_penalty),
        ...given('repetition_penalty', common.repetition_penalty),
        ...given('logit_bias', common.logit_bias),
        ...given('seed', common.seed),
        ...given('logprobs', logprobs),
      },
    },
  };
}
