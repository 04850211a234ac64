import { api, send, serverSentEvents } from './api.js';
import { errorNotice, h, integer, replace, messageOf } from './dom.js';
import { percent, probability, tokenDetail, tokensOf, type StreamedToken } from './tokens.js';
import type { Model, PageContext, Page } from './types.js';

/** A number field of the sampler form; an empty field sends nothing (the server's default). */
interface SamplerField {
  name: string;
  label: string;
  value: string;
  min: number;
  max: number;
  step: number;
  hint: string;
}

const SAMPLER_FIELDS: readonly SamplerField[] = [
  { name: 'max_tokens', label: 'Max tokens', value: '64', min: 1, max: 4096, step: 1, hint: '' },
  {
    name: 'temperature',
    label: 'Temperature',
    value: '0.8',
    min: 0,
    max: 2,
    step: 0.05,
    hint: '0 = greedy',
  },
  { name: 'top_p', label: 'Top p', value: '1', min: 0, max: 1, step: 0.01, hint: '' },
  { name: 'top_k', label: 'Top k', value: '0', min: 0, max: 1000, step: 1, hint: '0 = off' },
  { name: 'min_p', label: 'Min p', value: '0', min: 0, max: 1, step: 0.01, hint: '' },
  {
    name: 'repetition_penalty',
    label: 'Repetition penalty',
    value: '1',
    min: 0.1,
    max: 10,
    step: 0.05,
    hint: '1 = off',
  },
  { name: 'seed', label: 'Seed', value: '', min: 0, max: 2 ** 31, step: 1, hint: 'empty = random' },
  {
    name: 'top_logprobs',
    label: 'Alternatives shown',
    value: '5',
    min: 0,
    max: 20,
    step: 1,
    hint: 'top log-probs',
  },
];

function samplerInputs(): HTMLElement[] {
  return SAMPLER_FIELDS.map((field) =>
    h(
      'label',
      { class: 'field' },
      h('span', {}, field.label, field.hint === '' ? null : h('small', {}, ` ${field.hint}`)),
      h('input', {
        type: 'number',
        name: field.name,
        value: field.value,
        min: field.min,
        max: field.max,
        step: field.step,
      }),
    ),
  );
}

/** A text field of a form ('' when absent). */
function text(data: FormData, name: string): string {
  const value = data.get(name);
  return typeof value === 'string' ? value : '';
}

/** The request body from the form: OpenAI's fields, streaming with log-probs and usage. */
function requestBody(form: HTMLFormElement, chat: boolean): Record<string, unknown> {
  const data = new FormData(form);
  const body: Record<string, unknown> = {
    model: data.get('model'),
    stream: true,
    stream_options: { include_usage: true },
  };
  for (const field of SAMPLER_FIELDS) {
    const raw = text(data, field.name).trim();
    if (raw === '' || field.name === 'top_logprobs') continue;
    body[field.name] = Number(raw);
  }
  if (body.top_k === 0) delete body.top_k;
  const alternatives = Number(data.get('top_logprobs') ?? 0);
  const prompt = text(data, 'prompt');
  if (chat) {
    const system = text(data, 'system').trim();
    body.messages = [
      ...(system === '' ? [] : [{ role: 'system', content: system }]),
      { role: 'user', content: prompt },
    ];
    body.logprobs = true;
    body.top_logprobs = alternatives;
  } else {
    body.prompt = prompt;
    body.logprobs = alternatives;
  }
  return body;
}

/** Completions and chat with streaming, the sampler's settings, and every token's log-prob. */
export async function playgroundPage({ root, signal }: PageContext): Promise<void> {
  const models = await api<Page<Model>>('v1/models');
  const mode = h(
    'select',
    { name: 'mode', id: 'mode' },
    h('option', { value: 'completion' }, 'Completion'),
    h('option', { value: 'chat' }, 'Chat'),
  );
  const systemField = h(
    'label',
    { class: 'field wide', hidden: true },
    h('span', {}, 'System message'),
    h('textarea', { name: 'system', rows: 2 }),
  );
  const promptLabel = h('span', {}, 'Prompt');
  const run = h('button', { type: 'submit', class: 'primary', id: 'generate' }, 'Generate');
  const stop = h('button', { type: 'button', id: 'stop', disabled: true }, 'Stop');
  const form = h(
    'form',
    { class: 'card controls', id: 'playground-form' },
    h(
      'div',
      { class: 'row' },
      h('label', { class: 'field' }, h('span', {}, 'Endpoint'), mode),
      h(
        'label',
        { class: 'field' },
        h('span', {}, 'Model'),
        h(
          'select',
          { name: 'model', id: 'model' },
          ...models.data.map((model) => h('option', { value: model.id }, model.id)),
        ),
      ),
    ),
    systemField,
    h(
      'label',
      { class: 'field wide' },
      promptLabel,
      h('textarea', { name: 'prompt', id: 'prompt', rows: 5, required: true }, 'It was'),
    ),
    h('fieldset', { class: 'sampler' }, h('legend', {}, 'Sampler'), ...samplerInputs()),
    h('div', { class: 'row' }, run, stop),
  );
  const stats = h(
    'p',
    { class: 'stats', id: 'stats' },
    'Tokens appear here as they are generated; select one to see its alternatives.',
  );
  const output = h('div', { class: 'tokens', id: 'output', 'aria-live': 'polite' });
  const problem = h('div', { id: 'playground-error' });
  const detail = h(
    'div',
    { class: 'card detail', id: 'token-detail' },
    h('p', { class: 'muted' }, 'No token selected.'),
  );
  const legend = h(
    'p',
    { class: 'legend' },
    'Colour: the probability the model gave each token (',
    h('span', { class: 'swatch low' }, 'low'),
    ' → ',
    h('span', { class: 'swatch high' }, 'high'),
    ').',
  );
  replace(
    root,
    h('h1', {}, 'Playground'),
    models.data.length === 0 ? errorNotice('No model is served right now: start a worker.') : null,
    h(
      'div',
      { class: 'columns' },
      form,
      h(
        'section',
        { class: 'card output-card' },
        h('h2', {}, 'Output'),
        stats,
        output,
        problem,
        legend,
        detail,
      ),
    ),
  );

  mode.addEventListener('change', () => {
    const chat = mode.value === 'chat';
    systemField.hidden = !chat;
    promptLabel.textContent = chat ? 'User message' : 'Prompt';
  });

  let running: AbortController | undefined;
  signal.addEventListener('abort', () => running?.abort());
  stop.addEventListener('click', () => running?.abort());
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    running?.abort();
    const controller = new AbortController();
    running = controller;
    const chat = mode.value === 'chat';
    const tokens: StreamedToken[] = [];
    output.replaceChildren();
    problem.replaceChildren();
    output.dataset.state = 'streaming';
    replace(detail, h('p', { class: 'muted' }, 'No token selected.'));
    run.disabled = true;
    stop.disabled = false;
    const started = performance.now();
    let firstAt: number | undefined;
    let finish = '';
    const showStats = (): void => {
      const seconds = (performance.now() - (firstAt ?? started)) / 1000;
      const rate =
        tokens.length > 1 && seconds > 0
          ? ` · ${((tokens.length - 1) / seconds).toFixed(1)} tokens/s`
          : '';
      const first =
        firstAt === undefined ? '' : ` · first token after ${integer(firstAt - started)} ms`;
      stats.textContent = `${tokens.length} tokens${rate}${first}${finish === '' ? '' : ` · finish: ${finish}`}`;
    };
    const add = (token: StreamedToken): void => {
      const position = tokens.length;
      tokens.push(token);
      firstAt ??= performance.now();
      const span = h('span', { class: 'token', tabindex: 0, 'data-index': position }, token.text);
      if (token.logprob !== null) {
        const p = probability(token.logprob);
        span.dataset.logprob = token.logprob.toFixed(4);
        span.title = `log-prob ${token.logprob.toFixed(3)} (p ${percent(p)})`;
        span.style.backgroundColor = `hsl(${Math.round(120 * p)} 75% 86%)`;
      }
      const select = (): void => {
        output.querySelector('.selected')?.classList.remove('selected');
        span.classList.add('selected');
        replace(detail, tokenDetail(token, position));
      };
      span.addEventListener('click', select);
      span.addEventListener('focus', select);
      output.append(span);
    };
    const stream = async (): Promise<void> => {
      const response = await send(chat ? 'v1/chat/completions' : 'v1/completions', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(requestBody(form, chat)),
        signal: controller.signal,
      });
      for await (const { data } of serverSentEvents(response)) {
        if (data === '[DONE]') break;
        const chunk = JSON.parse(data) as { choices?: { finish_reason?: string | null }[] };
        for (const token of tokensOf(chunk, chat)) add(token);
        finish = chunk.choices?.[0]?.finish_reason ?? finish;
        showStats();
      }
    };
    stream()
      .catch((error: unknown) => {
        if (controller.signal.aborted) finish = 'stopped';
        else replace(problem, errorNotice(messageOf(error)));
      })
      .finally(() => {
        showStats();
        output.dataset.state = 'done';
        run.disabled = false;
        stop.disabled = true;
      });
  });
}
