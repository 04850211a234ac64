import type { FinishReason, GenerateResult, Usage } from '#contracts';
import type { ChatCompletionBody, CompletionBody } from '../docs/response-schemas.js';

/**
 * Responses and stream chunks in OpenAI's shapes (`text_completion`, `chat.completion`,
 * `chat.completion.chunk`), built from the worker's results and stream events.
 */

export interface TokenLogprob {
  text: string;
  logprob: number;
  top: readonly { text: string; logprob: number }[];
}

export interface OpenAiUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

export function openAiUsage(usage: Usage): OpenAiUsage {
  return {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    total_tokens: usage.promptTokens + usage.completionTokens,
    prompt_tokens_details: { cached_tokens: usage.cachedTokens },
  };
}

/** OpenAI has no `cancelled`: a cancelled choice reports `stop` with the text it had produced. */
export function openAiFinishReason(reason: FinishReason): 'stop' | 'length' {
  return reason === 'length' ? 'length' : 'stop';
}

/**
 * Legacy completions' logprobs. `text_offset` counts characters from the start of the
 * completion text (the prompt is not echoed).
 */
export function completionLogprobs(tokens: readonly TokenLogprob[], startOffset = 0) {
  const offsets: number[] = [];
  let offset = startOffset;
  for (const token of tokens) {
    offsets.push(offset);
    offset += token.text.length;
  }
  return {
    tokens: tokens.map((token) => token.text),
    token_logprobs: tokens.map((token) => token.logprob),
    top_logprobs: tokens.map((token) =>
      Object.fromEntries(token.top.map((alternative) => [alternative.text, alternative.logprob])),
    ),
    text_offset: offsets,
  };
}

const utf8Bytes = (text: string): number[] => [...Buffer.from(text, 'utf8')];

export function chatLogprobs(tokens: readonly TokenLogprob[]) {
  return {
    content: tokens.map((token) => ({
      token: token.text,
      logprob: token.logprob,
      bytes: utf8Bytes(token.text),
      top_logprobs: token.top.map((alternative) => ({
        token: alternative.text,
        logprob: alternative.logprob,
        bytes: utf8Bytes(alternative.text),
      })),
    })),
    refusal: null,
  };
}

export interface ResponseMeta {
  id: string;
  model: string;
  /** Unix seconds. */
  created: number;
}

export function completionResponse(meta: ResponseMeta, result: GenerateResult): CompletionBody {
  return {
    id: meta.id,
    object: 'text_completion' as const,
    created: meta.created,
    model: meta.model,
    choices: result.choices.map((choice) => ({
      index: choice.index,
      text: choice.text,
      logprobs: choice.logprobs === undefined ? null : completionLogprobs(choice.logprobs),
      finish_reason: openAiFinishReason(choice.finishReason),
    })),
    usage: openAiUsage(result.usage),
  };
}

export function chatResponse(meta: ResponseMeta, result: GenerateResult): ChatCompletionBody {
  return {
    id: meta.id,
    object: 'chat.completion' as const,
    created: meta.created,
    model: meta.model,
    choices: result.choices.map((choice) => ({
      index: choice.index,
      message: { role: 'assistant' as const, content: choice.text, refusal: null },
      logprobs: choice.logprobs === undefined ? null : chatLogprobs(choice.logprobs),
      finish_reason: openAiFinishReason(choice.finishReason),
    })),
    usage: openAiUsage(result.usage),
  };
}

/** Builds the chunks of one streamed response (completion or chat). */
export class ChunkWriter {
  constructor(
    private readonly kind: 'completion' | 'chat',
    private readonly meta: ResponseMeta,
    /** With `stream_options.include_usage`, every chunk carries `usage: null`, the last the usage. */
    private readonly includeUsage: boolean,
  ) {}

  private envelope(choices: unknown[]) {
    return {
      id: this.meta.id,
      object: this.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
      created: this.meta.created,
      model: this.meta.model,
      choices,
      ...(this.includeUsage ? { usage: null } : {}),
    };
  }

  /** Chat streams open each choice with the assistant role. */
  roleChunk(choice: number) {
    return this.envelope([
      {
        index: choice,
        delta: { role: 'assistant', content: '' },
        logprobs: null,
        finish_reason: null,
      },
    ]);
  }

  /** New text of one choice; `logprob` when the request asked for logprobs. */
  textChunk(
    choice: number,
    text: string,
    logprob: TokenLogprob | undefined,
    offset: number,
    finishReason: FinishReason | null = null,
  ) {
    const finish = finishReason === null ? null : openAiFinishReason(finishReason);
    if (this.kind === 'chat') {
      return this.envelope([
        {
          index: choice,
          delta: text === '' && finish !== null ? {} : { content: text },
          logprobs: logprob === undefined ? null : chatLogprobs([logprob]),
          finish_reason: finish,
        },
      ]);
    }
    return this.envelope([
      {
        index: choice,
        text,
        logprobs: logprob === undefined ? null : completionLogprobs([logprob], offset),
        finish_reason: finish,
      },
    ]);
  }

  usageChunk(usage: Usage) {
    return { ...this.envelope([]), usage: openAiUsage(usage) };
  }
}
