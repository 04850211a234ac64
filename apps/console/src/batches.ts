import { api } from './api.js';
import {
  errorNotice,
  h,
  integer,
  progressBar,
  refreshUntilLeft,
  replace,
  timestamp,
  messageOf,
} from './dom.js';
import { statusBadge } from './jobs.js';
import type { Batch, Page, PageContext } from './types.js';

const ACTIVE = new Set(['validating', 'in_progress', 'finalizing', 'cancelling']);

/** Throughput of a running batch and when it should finish, from its counts and start time. */
function eta(batch: Batch): string {
  const { total, completed, failed } = batch.request_counts;
  const done = completed + failed;
  if (!ACTIVE.has(batch.status)) return '—';
  if (batch.in_progress_at === null || done === 0) return 'estimating…';
  const elapsed = Date.now() / 1000 - batch.in_progress_at;
  const seconds = Math.max(0, ((total - done) * elapsed) / done);
  return seconds < 60 ? `${Math.round(seconds)} s` : `${Math.round(seconds / 60)} min`;
}

/** The tenant's batches (OpenAI Batch API) with their request counts, kept current. */
export async function batchesPage({ root, signal }: PageContext): Promise<void> {
  const body = h('tbody', {});
  const problem = h('div', {});
  replace(
    root,
    h('h1', {}, 'Batches'),
    h(
      'p',
      { class: 'muted' },
      'Batches are created through the API (POST /v1/files, then POST /v1/batches); their output files are listed here once finished.',
    ),
    problem,
    h(
      'table',
      { class: 'list', id: 'batches' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ...[
            'Batch',
            'Endpoint',
            'Status',
            'Requests',
            'Progress',
            'ETA',
            'Created',
            'Output',
            '',
          ].map((title) => h('th', {}, title)),
        ),
      ),
      body,
    ),
  );
  const refresh = async (): Promise<void> => {
    const batches = await api<Page<Batch>>('v1/batches?limit=100');
    const rows = batches.data.map((batch) => {
      const { total, completed, failed } = batch.request_counts;
      let cancel: HTMLElement | null = null;
      if (batch.status === 'validating' || batch.status === 'in_progress') {
        const button = h('button', { type: 'button', class: 'danger small' }, 'Cancel');
        button.addEventListener('click', () => {
          button.disabled = true;
          api(`v1/batches/${encodeURIComponent(batch.id)}/cancel`, { method: 'POST' })
            .then(refresh)
            .catch((error: unknown) => {
              replace(problem, errorNotice(messageOf(error)));
            });
        });
        cancel = button;
      }
      return h(
        'tr',
        { 'data-batch': batch.id },
        h('td', {}, h('code', {}, batch.id)),
        h('td', {}, h('code', {}, batch.endpoint)),
        h('td', {}, statusBadge(batch.status)),
        h(
          'td',
          { class: 'number' },
          `${integer(completed)} done, ${integer(failed)} failed of ${integer(total)}`,
        ),
        h(
          'td',
          { class: 'progress-cell' },
          progressBar(total === 0 ? 0 : (completed + failed) / total, `progress of ${batch.id}`),
        ),
        h('td', {}, eta(batch)),
        h('td', {}, timestamp(batch.created_at)),
        h('td', {}, batch.output_file_id === null ? '—' : h('code', {}, batch.output_file_id)),
        h('td', {}, cancel),
      );
    });
    replace(
      body,
      ...(rows.length === 0
        ? [h('tr', {}, h('td', { colspan: 9, class: 'muted' }, 'No batches yet.'))]
        : rows),
    );
  };
  await refresh();
  refreshUntilLeft(refresh, problem, signal);
}
