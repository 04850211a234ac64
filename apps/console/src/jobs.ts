import { api, ApiFailure, send, serverSentEvents } from './api.js';
import {
  duration,
  errorNotice,
  h,
  integer,
  progressBar,
  refreshUntilLeft,
  replace,
  timestamp,
  messageOf,
} from './dom.js';
import { scoreFigure } from './score-chart.js';
import type { DigestResult, GenerateResult, Job, Page, PageContext, ScoreResult } from './types.js';

const finished = (job: Job): boolean => job.status !== 'queued' && job.status !== 'running';

/**
 * The share of a job done: input tokens read for score and digest jobs; for generate jobs, whose
 * output length is unknown until they stop, the time so far against the API's ETA.
 */
function fraction(job: Job): number {
  if (job.status === 'completed') return 1;
  const progress = job.progress;
  if (progress === null || progress.prompt_tokens_total === 0) return 0;
  const read = progress.prompt_tokens_done / progress.prompt_tokens_total;
  if (job.type !== 'generate' || read < 1) return job.type === 'generate' ? 0 : read;
  if (job.started_at === null || job.eta_seconds === null) return 0;
  const elapsed = Math.max(0, Date.now() / 1000 - job.started_at);
  return elapsed + job.eta_seconds === 0 ? 0 : elapsed / (elapsed + job.eta_seconds);
}

/** A progress bar while a job runs or once it completed; a stopped job shows none. */
const progressCell = (job: Job, label: string): HTMLElement | string =>
  job.status === 'failed' || job.status === 'cancelled' ? '—' : progressBar(fraction(job), label);

function etaText(job: Job): string {
  if (finished(job)) return '—';
  return job.eta_seconds === null ? 'estimating…' : duration(job.eta_seconds);
}

export const statusBadge = (status: string): HTMLElement =>
  h('span', { class: `status-badge ${status}`, 'data-status': status }, status);

/** Cancels a job, then calls `after` (with the error, if the cancel failed). */
function cancelButton(job: Job, after: (error?: unknown) => void): HTMLElement | null {
  if (finished(job)) return null;
  const button = h(
    'button',
    { type: 'button', class: 'danger small', 'data-cancel': job.id },
    'Cancel',
  );
  button.addEventListener('click', () => {
    button.disabled = true;
    api<Job>(`v1/jobs/${encodeURIComponent(job.id)}/cancel`, { method: 'POST' }).then(
      () => {
        after();
      },
      (error: unknown) => {
        after(error);
      },
    );
  });
  return button;
}

/** Every job of the signed-in tenant, newest first, with progress and ETA kept current. */
export async function jobsPage({ root, signal }: PageContext): Promise<void> {
  const body = h('tbody', {});
  const problem = h('div', {});
  replace(
    root,
    h('h1', {}, 'Jobs'),
    h(
      'p',
      { class: 'muted' },
      'Generate, score and digest jobs of this key’s tenant. Score a document from the Documents page.',
    ),
    problem,
    h(
      'table',
      { class: 'list', id: 'jobs' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ...['Job', 'Type', 'Model', 'Status', 'Progress', 'ETA', 'Created', ''].map((title) =>
            h('th', {}, title),
          ),
        ),
      ),
      body,
    ),
  );
  const refresh = async (): Promise<void> => {
    const jobs = await api<Page<Job>>('v1/jobs?limit=50');
    const rows = jobs.data.map((job) =>
      h(
        'tr',
        { 'data-job': job.id },
        h('td', {}, h('a', { href: `#/jobs/${job.id}` }, h('code', {}, job.id))),
        h('td', {}, job.type),
        h('td', {}, job.model),
        h('td', {}, statusBadge(job.status)),
        h('td', { class: 'progress-cell' }, progressCell(job, `progress of ${job.id}`)),
        h('td', {}, etaText(job)),
        h('td', {}, timestamp(job.created_at)),
        h(
          'td',
          {},
          cancelButton(job, () => void refresh().catch(() => undefined)),
        ),
      ),
    );
    replace(
      body,
      ...(rows.length === 0
        ? [h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No jobs yet.'))]
        : rows),
    );
  };
  await refresh();
  refreshUntilLeft(refresh, problem, signal);
}

function resultView(job: Job): HTMLElement | null {
  const result = job.result;
  if (result === null) return null;
  switch (job.type) {
    case 'score':
      return scoreFigure(result as ScoreResult);
    case 'generate':
      return h(
        'div',
        {},
        ...(result as GenerateResult).choices.map((choice) =>
          h(
            'div',
            { class: 'choice' },
            h('h3', {}, `Choice ${choice.index} · ${choice.finish_reason}`),
            h('pre', { class: 'generated' }, choice.text),
          ),
        ),
      );
    case 'digest': {
      const digest = result as DigestResult;
      return h(
        'p',
        {},
        'Saved state ',
        h('code', {}, digest.state_id),
        ` at position ${integer(digest.position)}: continue from it with `,
        h('code', {}, 'state_id'),
        '.',
      );
    }
  }
}

/**
 * One job, followed live through its event stream (`/v1/jobs/{id}/events`): progress as the
 * worker reports it, tokens of generate jobs as they come, and the result (a score job's
 * perplexity chart) when it is done. Another tenant's job answers 404, like one that never was.
 */
export async function jobPage({ root, signal, argument }: PageContext): Promise<void> {
  const id = argument ?? '';
  let job: Job;
  try {
    job = await api<Job>(`v1/jobs/${encodeURIComponent(id)}`);
  } catch (error) {
    if (error instanceof ApiFailure && error.status === 404) {
      replace(
        root,
        h('h1', {}, 'Job not found'),
        h('p', { class: 'error', id: 'not-found' }, `No job '${id}' exists for this key’s tenant.`),
        h('p', {}, h('a', { href: '#/jobs' }, '← All jobs')),
      );
      return;
    }
    throw error;
  }
  const header = h('div', { class: 'job-header' });
  const progress = h('div', { class: 'job-progress' });
  const generated = h('pre', { class: 'generated', hidden: true });
  const result = h('section', { id: 'result' });
  replace(
    root,
    h('p', {}, h('a', { href: '#/jobs' }, '← All jobs')),
    header,
    progress,
    generated,
    result,
  );

  const draw = (): void => {
    replace(
      header,
      h(
        'h1',
        {},
        `${job.type[0]?.toUpperCase() ?? ''}${job.type.slice(1)} job `,
        h('code', {}, job.id),
      ),
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'Status'),
        h('dd', { id: 'job-status' }, statusBadge(job.status)),
        h('dt', {}, 'Model'),
        h('dd', {}, job.model),
        h('dt', {}, 'Worker'),
        h('dd', {}, job.worker === null ? '—' : `${job.worker.host} (pid ${job.worker.pid})`),
        h('dt', {}, 'Created'),
        h('dd', {}, timestamp(job.created_at)),
        h('dt', {}, 'Finished'),
        h('dd', {}, job.finished_at === null ? '—' : timestamp(job.finished_at)),
      ),
      cancelButton(job, (error) => {
        if (error !== undefined) header.append(errorNotice(messageOf(error)));
      }),
      job.error === null ? null : errorNotice(job.error.message),
    );
    const p = job.progress;
    // Workers record progress at most once a second: a completed job has read all its input.
    const read = job.status === 'completed' ? p?.prompt_tokens_total : p?.prompt_tokens_done;
    const tokens =
      p === null
        ? ''
        : `${integer(read ?? 0)} / ${integer(p.prompt_tokens_total)} input tokens` +
          (p.completion_tokens > 0 ? `, ${integer(p.completion_tokens)} output tokens` : '');
    replace(
      progress,
      progressCell(job, 'job progress'),
      h(
        'p',
        { class: 'muted', id: 'job-eta' },
        `${tokens}${tokens === '' ? '' : ' · '}ETA ${etaText(job)}`,
      ),
    );
    const view = resultView(job);
    replace(result, view === null ? null : h('h2', {}, 'Result'), view);
  };
  draw();
  if (finished(job)) return;

  const response = await send(`v1/jobs/${encodeURIComponent(id)}/events`, { signal });
  for await (const event of serverSentEvents(response)) {
    const data = JSON.parse(event.data) as Record<string, unknown>;
    switch (event.event) {
      case 'progress': {
        // A job that was queued when the page opened: its start time comes with a fresh read.
        if (job.started_at === null) job = await api<Job>(`v1/jobs/${encodeURIComponent(id)}`);
        const done = Number(data.prompt_tokens_done);
        const total = Number(data.prompt_tokens_total);
        const elapsed = job.started_at === null ? 0 : Date.now() / 1000 - job.started_at;
        job = {
          ...job,
          status: 'running',
          progress: {
            phase: 'prefill',
            prompt_tokens_done: done,
            prompt_tokens_total: total,
            completion_tokens: job.progress?.completion_tokens ?? 0,
          },
          // The same estimate as the API's: the time so far, scaled to the work left.
          eta_seconds:
            done > 0 && elapsed > 0
              ? Math.round(((total - done) * elapsed) / done)
              : job.eta_seconds,
        };
        draw();
        break;
      }
      case 'token':
        generated.hidden = false;
        generated.append(String(data.text));
        break;
      case 'done':
        job = data as unknown as Job;
        draw();
        return;
      case 'failed':
        job = await api<Job>(`v1/jobs/${encodeURIComponent(id)}`);
        draw();
        return;
    }
  }
}
