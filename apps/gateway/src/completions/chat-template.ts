/**
 * Chat requests become prompts through the chat template of the model's bundle, which the
 * model's workers publish in Redis (the gateway never sees bundles); a model without one gets the
 * default format (`renderChat`). Templates are Hugging Face-style Jinja, rendered by
 * @huggingface/jinja with the variables transformers' `apply_chat_template` gives them.
 */
import { Template } from '@huggingface/jinja';
import type { RedisClient } from '#cluster';
import type { ModelChat, RedisKeys } from '#contracts';
import { readModelChat } from '#cluster';
import { invalidRequest } from '../common/api-error.js';
import { messageText, renderChat, templateRole, type ChatMessage } from './openai-schemas.js';

/** A model's published template is read at most this often per gateway. @defaultValue 1000 ms */
const PUBLISHED_CACHE_MS = 1000;
/** Compiled templates kept per gateway (one per model in practice). @defaultValue 64 */
const MAX_COMPILED_TEMPLATES = 64;

export interface ChatTemplate {
  readonly template: string;
  readonly bosToken?: string | undefined;
  readonly eosToken?: string | undefined;
}

const compiledTemplates = new Map<string, Template>();

/** Parses each distinct template once; a template that does not parse is a broken bundle (500). */
function compiled(template: string): Template {
  let parsed = compiledTemplates.get(template);
  if (parsed === undefined) {
    parsed = new Template(template);
    const oldest = compiledTemplates.keys().next();
    if (compiledTemplates.size >= MAX_COMPILED_TEMPLATES && oldest.done !== true) {
      compiledTemplates.delete(oldest.value);
    }
    compiledTemplates.set(template, parsed);
  }
  return parsed;
}

/**
 * Renders `messages` with a Hugging Face-style chat template, ready for the assistant's reply
 * (`add_generation_prompt`). `raise_exception(message)`, which templates call to refuse a
 * conversation (roles that do not alternate, an unknown role), is @huggingface/jinja's built-in
 * global (rendering may not redefine it). A refusal, or any other failure to render these
 * messages, is the request's problem: 400 naming `messages`, with the template's message.
 */
export function renderChatTemplate(chat: ChatTemplate, messages: readonly ChatMessage[]): string {
  const template = compiled(chat.template);
  try {
    return template.render({
      messages: messages.map((message) => ({
        role: templateRole(message),
        content: messageText(message),
        ...(message.name === undefined ? {} : { name: message.name }),
      })),
      // Absent tokens stay undefined, as transformers leaves them when a tokenizer has none.
      ...(chat.bosToken === undefined ? {} : { bos_token: chat.bosToken }),
      ...(chat.eosToken === undefined ? {} : { eos_token: chat.eosToken }),
      add_generation_prompt: true,
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw invalidRequest(
      `The model's chat template cannot render these messages: ${reason}`,
      'messages',
    );
  }
}

/** Chat prompts per model, with the template its workers published (cached briefly). */
export class ChatPrompts {
  private readonly published = new Map<
    string,
    { at: number; chat: Promise<ModelChat | undefined> }
  >();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
  ) {}

  /** The prompt for `messages` to `model`: its template's rendering, or the default format. */
  async render(model: string, messages: readonly ChatMessage[]): Promise<string> {
    const chat = await this.publishedChat(model);
    if (chat === undefined) return renderChat(messages);
    const { template, ...tokens } = chat;
    return template === null
      ? renderChat(messages)
      : renderChatTemplate({ template, ...tokens }, messages);
  }

  /**
   * Only published templates are cached: model ids come from clients, and a model whose workers
   * have not published yet should get its template as soon as they do.
   */
  private async publishedChat(model: string): Promise<ModelChat | undefined> {
    const now = Date.now();
    const cached = this.published.get(model);
    if (cached !== undefined && now - cached.at <= PUBLISHED_CACHE_MS) return cached.chat;
    const chat = readModelChat(this.redis, this.keys, model);
    this.published.set(model, { at: now, chat });
    const forget = (): void => {
      if (this.published.get(model)?.chat === chat) this.published.delete(model);
    };
    chat.then((found) => {
      if (found === undefined) forget();
    }, forget);
    return chat;
  }
}
