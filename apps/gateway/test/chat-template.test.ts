import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ErrorType, redisKeys } from '#contracts';
import { publishModelChat } from '#cluster';
import { deletePrefix, uniquePrefix } from '#testing';
import { ApiError } from '../src/common/api-error.js';
import { ChatPrompts, renderChatTemplate } from '../src/completions/chat-template.js';
import type { ChatMessage } from '../src/completions/openai-schemas.js';

/** ChatML, as many models on the Hugging Face Hub ship it in tokenizer_config.json. */
const CHATML =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** Mistral-7B-Instruct-v0.1's template: BOS and EOS tokens, and raise_exception. */
const MISTRAL =
  "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

/** zephyr-7b-beta's template: one statement per line, so block whitespace must be trimmed. */
const ZEPHYR = `{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>\\n' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>\\n' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\\n'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}`;

/** The rendering error of `render`, which must be a 400 about `messages`. */
function renderError(render: () => unknown): ApiError {
  try {
    render();
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  throw new Error('the template rendered');
}

describe('chat templates (Hugging Face style)', () => {
  it('renders ChatML: developer as system, text parts joined, ready for the reply', () => {
    const messages: ChatMessage[] = [
      { role: 'developer', content: 'Be brief.' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Hello, ' },
          { type: 'text', text: 'world' },
        ],
      },
      { role: 'assistant', content: 'Hi!' },
      { role: 'user', content: 'Bye' },
    ];
    expect(renderChatTemplate({ template: CHATML }, messages)).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n' +
        '<|im_start|>user\nHello, world<|im_end|>\n' +
        '<|im_start|>assistant\nHi!<|im_end|>\n' +
        '<|im_start|>user\nBye<|im_end|>\n' +
        '<|im_start|>assistant\n',
    );
  });

  it('gives the template the BOS and EOS token texts', () => {
    const chat = { template: MISTRAL, bosToken: '<s>', eosToken: '</s>' };
    expect(
      renderChatTemplate(chat, [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello' },
        { role: 'user', content: 'Bye' },
      ]),
    ).toBe('<s>[INST] Hi [/INST]Hello</s> [INST] Bye [/INST]');
  });

  it('trims block whitespace as transformers does (zephyr, as in its documentation)', () => {
    expect(
      renderChatTemplate({ template: ZEPHYR, eosToken: '</s>' }, [
        { role: 'system', content: 'You are a friendly chatbot.' },
        { role: 'user', content: 'How are you?' },
      ]),
    ).toBe(
      '<|system|>\nYou are a friendly chatbot.</s>\n<|user|>\nHow are you?</s>\n<|assistant|>\n',
    );
  });

  it("answers 400 about 'messages' with the template's message when it raises", () => {
    const error = renderError(() =>
      renderChatTemplate({ template: MISTRAL, bosToken: '<s>', eosToken: '</s>' }, [
        { role: 'user', content: 'Hi' },
        { role: 'user', content: 'Hi again' },
      ]),
    );
    expect(error.status).toBe(400);
    expect(error.body).toEqual({
      error: {
        message:
          "The model's chat template cannot render these messages: Conversation roles must alternate user/assistant/user/assistant/...",
        type: ErrorType.InvalidRequest,
        param: 'messages',
        code: null,
      },
    });
  });

  it('answers 400 when the messages make the template fail, and fails loudly on one that does not parse', () => {
    const error = renderError(() =>
      renderChatTemplate({ template: '{{ messages + 1 }}' }, [{ role: 'user', content: 'Hi' }]),
    );
    expect(error.status).toBe(400);
    expect(error.param).toBe('messages');
    expect(error.message).toBe(
      'The model\'s chat template cannot render these messages: Unknown operator "+" between ArrayValue and IntegerValue',
    );
    // A template that does not parse is a broken bundle, not a bad request (500).
    const broken = (): unknown =>
      renderChatTemplate({ template: '{% for message in %}' }, [{ role: 'user', content: 'Hi' }]);
    expect(broken).toThrow(/Unexpected token/);
    expect(broken).not.toThrow(ApiError);
  });
});

describe('chat prompts per model, from the templates workers publish (real Redis)', () => {
  let redis: Redis;
  const prefix = uniquePrefix('chat-tpl');
  const keys = redisKeys(prefix);
  const messages: ChatMessage[] = [{ role: 'user', content: 'Hi' }];
  const defaultPrompt = '<|user|>\nHi\n<|assistant|>\n';
  const chatmlPrompt = '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n';

  beforeAll(() => {
    redis = new Redis(inject('redisUrl'));
  });
  afterAll(async () => {
    await deletePrefix(redis, prefix);
    await redis.quit();
  });

  it('renders with the published template, or the default format when there is none', async () => {
    const prompts = new ChatPrompts(redis, keys);
    await publishModelChat(redis, keys, 'with-template', { template: CHATML });
    await publishModelChat(redis, keys, 'without-template', { template: null });
    expect(await redis.get(`${prefix}:model:with-template:chat`)).toBe(
      JSON.stringify({ template: CHATML }),
    );
    expect(await prompts.render('with-template', messages)).toBe(chatmlPrompt);
    expect(await prompts.render('without-template', messages)).toBe(defaultPrompt);
    expect(await prompts.render('never-published', messages)).toBe(defaultPrompt);
  });

  it('uses a template as soon as the first worker publishes it', async () => {
    const prompts = new ChatPrompts(redis, keys);
    expect(await prompts.render('late', messages)).toBe(defaultPrompt);
    await publishModelChat(redis, keys, 'late', { template: CHATML });
    expect(await prompts.render('late', messages)).toBe(chatmlPrompt);
  });
});
