import { api, send } from './api.js';
import { bytes, errorNotice, h, replace, timestamp, messageOf } from './dom.js';
import type { DocumentInfo, Job, Model, Page, PageContext } from './types.js';

/** Windows a score job's perplexity curve gets by default. @defaultValue 256 tokens */
const DEFAULT_WINDOW_TOKENS = 256;

/**
 * The tenant's documents: upload a text file (streamed to the gateway as the request body),
 * delete one, or score one, which starts a score job and opens its page.
 */
export async function documentsPage({ root }: PageContext): Promise<void> {
  const models = await api<Page<Model>>('v1/models');
  const file = h('input', {
    type: 'file',
    id: 'document-file',
    name: 'file',
    accept: '.txt,.md,text/plain',
    required: true,
  });
  const uploadStatus = h('div', { class: 'status', id: 'upload-status' });
  const upload = h(
    'form',
    { class: 'card', id: 'upload-form' },
    h('h2', {}, 'Upload a document'),
    h(
      'p',
      { class: 'muted' },
      'UTF-8 text, up to the gateway’s MAX_DOCUMENT_BYTES (64 MiB by default).',
    ),
    h('div', { class: 'row' }, file, h('button', { type: 'submit', class: 'primary' }, 'Upload')),
    uploadStatus,
  );
  const model = h(
    'select',
    { id: 'score-model' },
    ...models.data.map((m) => h('option', { value: m.id }, m.id)),
  );
  const windowTokens = h('input', {
    type: 'number',
    id: 'window-tokens',
    min: 1,
    step: 1,
    value: DEFAULT_WINDOW_TOKENS,
  });
  const body = h('tbody', {});
  const problem = h('div', {});
  replace(
    root,
    h('h1', {}, 'Documents'),
    upload,
    h(
      'section',
      { class: 'card' },
      h('h2', {}, 'Your documents'),
      h(
        'div',
        { class: 'row' },
        h('label', { class: 'field' }, h('span', {}, 'Score with model'), model),
        h(
          'label',
          { class: 'field' },
          h('span', {}, 'Window (tokens) for the perplexity curve'),
          windowTokens,
        ),
      ),
      problem,
      h(
        'table',
        { class: 'list', id: 'documents' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ...['Document', 'Name', 'Size', 'Uploaded', ''].map((title) => h('th', {}, title)),
          ),
        ),
        body,
      ),
    ),
  );

  const score = async (document: DocumentInfo): Promise<void> => {
    const job = await api<Job>('v1/jobs', {
      method: 'POST',
      body: {
        type: 'score',
        model: model.value,
        document_id: document.id,
        window_tokens: Number(windowTokens.value),
      },
    });
    location.hash = `#/jobs/${job.id}`;
  };
  const refresh = async (): Promise<void> => {
    const documents = await api<Page<DocumentInfo>>('v1/documents?limit=100');
    const rows = documents.data.map((document) => {
      const scoreButton = h(
        'button',
        { type: 'button', class: 'primary small', 'data-score': document.id },
        'Score',
      );
      scoreButton.addEventListener('click', () => {
        scoreButton.disabled = true;
        score(document).catch((error: unknown) => {
          scoreButton.disabled = false;
          replace(problem, errorNotice(messageOf(error)));
        });
      });
      const deleteButton = h('button', { type: 'button', class: 'danger small' }, 'Delete');
      deleteButton.addEventListener('click', () => {
        api(`v1/documents/${encodeURIComponent(document.id)}`, { method: 'DELETE' })
          .then(refresh)
          .catch((error: unknown) => {
            replace(problem, errorNotice(messageOf(error)));
          });
      });
      return h(
        'tr',
        { 'data-document': document.id },
        h('td', {}, h('code', {}, document.id)),
        h('td', {}, document.filename),
        h('td', { class: 'number' }, bytes(document.bytes)),
        h('td', {}, timestamp(document.created_at)),
        h('td', { class: 'actions' }, scoreButton, deleteButton),
      );
    });
    replace(
      body,
      ...(rows.length === 0
        ? [h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No documents yet.'))]
        : rows),
    );
  };

  upload.addEventListener('submit', (event) => {
    event.preventDefault();
    const chosen = file.files?.[0];
    if (chosen === undefined) return;
    replace(
      uploadStatus,
      h('p', { class: 'muted' }, `Uploading ${chosen.name} (${bytes(chosen.size)})…`),
    );
    send(`v1/documents?filename=${encodeURIComponent(chosen.name)}`, {
      method: 'POST',
      body: chosen,
      headers: { 'Content-Type': 'text/plain; charset=utf-8' },
    })
      .then(async (response) => {
        const document = (await response.json()) as DocumentInfo;
        replace(
          uploadStatus,
          h(
            'p',
            { class: 'ok' },
            'Uploaded ',
            h('code', {}, document.id),
            ` (${bytes(document.bytes)}).`,
          ),
        );
        upload.reset();
        await refresh();
      })
      .catch((error: unknown) => {
        replace(uploadStatus, errorNotice(messageOf(error)));
      });
  });
  await refresh();
}
