import { h } from './dom.js';

/** One streamed token with what the model thought of it. */
export interface StreamedToken {
  text: string;
  logprob: number | null;
  /** The most likely alternatives at this position, most likely first. */
  top: { text: string; logprob: number }[];
}

export const probability = (logprob: number): number => Math.exp(logprob);
export const percent = (p: number): string => `${(p * 100).toFixed(p < 0.1 ? 1 : 0)}%`;
/** Visible form of whitespace in the alternatives list. */
const shown = (text: string): string =>
  JSON.stringify(text).slice(1, -1).replace(/\\"/g, '"') || '∅';

/** Reads one streamed chunk of either endpoint into tokens (text without logprobs included). */
export function tokensOf(chunk: unknown, chat: boolean): StreamedToken[] {
  interface Choice {
    text?: string;
    delta?: { content?: string };
    logprobs?: {
      tokens?: string[];
      token_logprobs?: number[];
      top_logprobs?: Record<string, number>[];
      content?: {
        token: string;
        logprob: number;
        top_logprobs: { token: string; logprob: number }[];
      }[];
    } | null;
  }
  const choice = (chunk as { choices?: Choice[] }).choices?.[0];
  if (choice === undefined) return [];
  const text = chat ? (choice.delta?.content ?? '') : (choice.text ?? '');
  const logprobs = choice.logprobs;
  if (logprobs === null || logprobs === undefined) {
    return text === '' ? [] : [{ text, logprob: null, top: [] }];
  }
  if (chat) {
    return (logprobs.content ?? []).map((token) => ({
      text: token.token,
      logprob: token.logprob,
      top: token.top_logprobs.map((alternative) => ({
        text: alternative.token,
        logprob: alternative.logprob,
      })),
    }));
  }
  return (logprobs.tokens ?? []).map((token, position) => ({
    text: token,
    logprob: logprobs.token_logprobs?.[position] ?? null,
    top: Object.entries(logprobs.top_logprobs?.[position] ?? {})
      .map(([alternative, logprob]) => ({ text: alternative, logprob }))
      .sort((a, b) => b.logprob - a.logprob),
  }));
}

/** The panel that explains one token: its probability and the alternatives the model weighed. */
export function tokenDetail(token: StreamedToken, position: number): HTMLElement {
  if (token.logprob === null)
    return h('p', { class: 'muted' }, 'No log-probabilities for this token.');
  const rows = token.top.map((alternative) => {
    const bar = h('div', { class: 'bar' });
    bar.style.width = `${probability(alternative.logprob) * 100}%`;
    return h(
      'tr',
      { class: alternative.text === token.text ? 'chosen' : null },
      h('td', {}, h('code', {}, shown(alternative.text))),
      h('td', { class: 'number' }, alternative.logprob.toFixed(3)),
      h('td', { class: 'number' }, percent(probability(alternative.logprob))),
      h('td', { class: 'bar-cell' }, bar),
    );
  });
  return h(
    'div',
    {},
    h(
      'p',
      {},
      `Token ${position + 1}: `,
      h('code', {}, shown(token.text)),
      ` — log-prob ${token.logprob.toFixed(3)}, p = ${percent(probability(token.logprob))}`,
    ),
    rows.length === 0
      ? null
      : h(
          'table',
          { class: 'alternatives' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              h('th', {}, 'Alternative'),
              h('th', {}, 'log-prob'),
              h('th', {}, 'p'),
              h('th', {}),
            ),
          ),
          h('tbody', {}, ...rows),
        ),
  );
}
