import { ApiFailure, send, session, whenUnauthorized } from './api.js';
import { batchesPage } from './batches.js';
import { clusterPage } from './cluster.js';
import { documentsPage } from './documents.js';
import { errorNotice, h, replace, messageOf } from './dom.js';
import { jobPage, jobsPage } from './jobs.js';
import { playgroundPage } from './playground.js';
import type { PageContext } from './types.js';

/** The console's pages, by the first part of the location hash (`#/jobs/job_…`). */
const PAGES: Record<string, { title: string; render: (context: PageContext) => unknown }> = {
  playground: { title: 'Playground', render: playgroundPage },
  jobs: {
    title: 'Jobs',
    render: (context) => (context.argument === undefined ? jobsPage(context) : jobPage(context)),
  },
  documents: { title: 'Documents', render: documentsPage },
  batches: { title: 'Batches', render: batchesPage },
  cluster: { title: 'Cluster', render: clusterPage },
};
const DEFAULT_PAGE = 'playground';

const app = document.getElementById('app');
if (app === null) throw new Error('index.html has no #app element');
let leave = new AbortController();

/**
 * A short form of the key, enough to tell keys apart without showing the secret: its last 4
 * characters, and only for keys long enough that those do not give most of it away.
 */
const keyHint = (key: string): string => (key.length >= 16 ? `…${key.slice(-4)}` : 'key');

/**
 * Checks a key against the gateway: any `/v1` route answers 401 to a wrong key. An admin key is
 * one `/admin/cluster` accepts (others get 403); the cluster page is offered to those only.
 */
async function signIn(key: string): Promise<void> {
  await send('v1/models', {}, key);
  let admin = false;
  try {
    await send('admin/cluster', {}, key);
    admin = true;
  } catch (error) {
    if (!(error instanceof ApiFailure && error.status === 403)) throw error;
  }
  session.start(key, admin);
}

function signInPage(message?: string): void {
  const input = h('input', {
    type: 'password',
    id: 'api-key',
    name: 'api-key',
    autocomplete: 'off',
    placeholder: 'sk-…',
    required: true,
  });
  const status = h('div', { class: 'status' }, message === undefined ? null : errorNotice(message));
  const form = h(
    'form',
    { class: 'card sign-in', id: 'sign-in' },
    h('h1', {}, 'DiJiang cluster'),
    h('p', {}, 'Sign in with an API key of this gateway.'),
    h('label', { for: 'api-key' }, 'API key'),
    input,
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
    status,
    h(
      'p',
      { class: 'hint' },
      'The key stays in this tab’s session storage and is sent only to this gateway; ' +
        'closing the tab forgets it.',
    ),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    replace(status, h('p', { class: 'muted' }, 'Checking the key…'));
    signIn(input.value.trim()).then(
      () => {
        if (location.hash === '' || location.hash === '#/') location.hash = `#/${DEFAULT_PAGE}`;
        route();
      },
      (error: unknown) => {
        replace(status, errorNotice(messageOf(error)));
      },
    );
  });
  replace(document.body, form);
  input.focus();
}

function navigation(current: string, key: string): HTMLElement {
  const links = Object.entries(PAGES)
    .filter(([name]) => name !== 'cluster' || session.admin())
    .map(([name, page]) =>
      h(
        'a',
        { href: `#/${name}`, class: name === current ? 'active' : null, 'data-page': name },
        page.title,
      ),
    );
  const signOut = h('button', { type: 'button', class: 'link', id: 'sign-out' }, 'Sign out');
  signOut.addEventListener('click', () => {
    session.end();
    signInPage();
  });
  return h(
    'header',
    {},
    h('span', { class: 'brand' }, 'DiJiang'),
    h('nav', {}, ...links),
    h(
      'span',
      { class: 'who' },
      h('code', {}, keyHint(key)),
      session.admin() ? h('span', { class: 'badge' }, 'admin') : null,
      signOut,
    ),
  );
}

/** Draws the page the hash names; the previous page's streams and timers stop first. */
function route(): void {
  leave.abort();
  leave = new AbortController();
  const key = session.key();
  if (key === null) {
    signInPage();
    return;
  }
  const [name = DEFAULT_PAGE, argument] = location.hash.replace(/^#\/?/, '').split('/');
  const page = PAGES[name];
  if (page === undefined) {
    location.hash = `#/${DEFAULT_PAGE}`;
    return;
  }
  const main = h('main', { id: 'page', 'data-page': name });
  replace(document.body, navigation(name, key), main);
  document.title = `${page.title} · DiJiang`;
  const context: PageContext = {
    root: main,
    signal: leave.signal,
    argument: argument === undefined || argument === '' ? undefined : decodeURIComponent(argument),
  };
  Promise.resolve(page.render(context)).catch((error: unknown) => {
    if (context.signal.aborted) return;
    main.append(errorNotice(messageOf(error)));
  });
}

whenUnauthorized(() => {
  session.end();
  signInPage('The gateway no longer accepts this key: sign in again.');
});
window.addEventListener('hashchange', route);
app.remove();
route();
