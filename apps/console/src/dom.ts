/** Small DOM helpers: the console builds its pages with these instead of a framework. */

export type Child = Node | string | number | null | undefined | false;
type Listener = (event: Event) => void;
export type Attributes = Record<string, string | number | boolean | Listener | null | undefined>;

function apply(element: Element, attributes: Attributes): void {
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (typeof value === 'function') element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
}

function append(parent: Node, children: readonly Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
}

/**
 * An HTML element: `h('button', { class: 'primary', onclick: go }, 'Go')`. Attributes named
 * `on…` with a function value become event listeners; `true` sets a boolean attribute, `false`,
 * `null` and `undefined` leave it out. Text is always inserted as text, never parsed as HTML.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  apply(element, attributes);
  append(element, children);
  return element;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element, with the same conventions as {@link h}. */
export function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG_NS, tag);
  apply(element, attributes);
  append(element, children);
  return element;
}

/** Replaces an element's children. */
export function replace(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

/** `12,345` */
export const integer = (value: number): string => Math.round(value).toLocaleString('en-US');

/** `1.2 kB`, `3.4 MB` (decimal units, as file sizes are usually shown). */
export function bytes(value: number): string {
  if (value < 1000) return `${value} B`;
  if (value < 1e6) return `${(value / 1e3).toFixed(1)} kB`;
  if (value < 1e9) return `${(value / 1e6).toFixed(1)} MB`;
  return `${(value / 1e9).toFixed(2)} GB`;
}

/** A duration in seconds as `42 s`, `3 min 5 s`, `1 h 2 min`. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** Unix seconds as local date and time. */
export const timestamp = (unixSeconds: number): string =>
  new Date(unixSeconds * 1000).toLocaleString();

/** A progress bar with its percentage as text (for screen readers and tests alike). */
export function progressBar(fraction: number, label: string): HTMLElement {
  const percent = Math.round(Math.min(1, Math.max(0, fraction)) * 100);
  const bar = h('div', {
    class: 'progress',
    role: 'progressbar',
    'aria-valuemin': 0,
    'aria-valuemax': 100,
    'aria-valuenow': percent,
    'aria-label': label,
  });
  const fill = h('div', { class: 'fill' });
  fill.style.width = `${percent}%`;
  bar.append(fill, h('span', { class: 'percent' }, `${percent}%`));
  return bar;
}

/** What went wrong, in words. */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return typeof error === 'string' ? error : JSON.stringify(error);
}

/** A short error notice. */
export const errorNotice = (message: string): HTMLElement =>
  h('p', { class: 'error', role: 'alert' }, message);

/** How often list pages read their data again. @defaultValue 2000 ms */
export const LIST_REFRESH_MS = 2000;

/**
 * Runs `refresh` every {@link LIST_REFRESH_MS} until `signal` aborts (the page is left), showing a
 * failed read in `problem` and clearing it after the next good one.
 */
export function refreshUntilLeft(
  refresh: () => Promise<void>,
  problem: Element,
  signal: AbortSignal,
): void {
  const timer = setInterval(() => {
    refresh().then(
      () => {
        problem.replaceChildren();
      },
      (error: unknown) => {
        replace(problem, errorNotice(messageOf(error)));
      },
    );
  }, LIST_REFRESH_MS);
  signal.addEventListener('abort', () => {
    clearInterval(timer);
  });
}
