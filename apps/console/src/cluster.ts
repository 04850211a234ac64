import { api, ApiFailure } from './api.js';
import { bytes, duration, errorNotice, h, integer, replace, messageOf } from './dom.js';
import type { Cluster, PageContext } from './types.js';

/** The cluster is read again this often. @defaultValue 2 s */
const REFRESH_MS = 2000;
/**
 * Tokens/s is measured over the readings of this span: workers count a job's tokens when it
 * finishes, so a shorter span would jump with every long job. @defaultValue 30 s
 */
const RATE_SPAN_MS = 30_000;

/** Tokens/s between the oldest and newest reading kept, or null before two readings. */
function throughput(readings: readonly Cluster[]): number | null {
  const first = readings[0];
  const last = readings.at(-1);
  if (first === undefined || last === undefined || last.time <= first.time) return null;
  return ((last.tokens_processed - first.tokens_processed) * 1000) / (last.time - first.time);
}

const counted = (n: number, one: string, many: string): string =>
  `${integer(n)} ${n === 1 ? one : many}`;

function tile(label: string, value: string, id: string): HTMLElement {
  return h(
    'div',
    { class: 'tile', id },
    h('div', { class: 'value' }, value),
    h('div', { class: 'label' }, label),
  );
}

function table(headings: string[], rows: HTMLElement[], id: string, empty: string): HTMLElement {
  return h(
    'table',
    { class: 'list', id },
    h('thead', {}, h('tr', {}, ...headings.map((title) => h('th', {}, title)))),
    h(
      'tbody',
      {},
      ...(rows.length === 0
        ? [h('tr', {}, h('td', { colspan: headings.length, class: 'muted' }, empty))]
        : rows),
    ),
  );
}

function draw(root: HTMLElement, readings: readonly Cluster[]): void {
  const now = readings.at(-1);
  if (now === undefined) return;
  const rate = throughput(readings);
  const cache = now.prefix_cache;
  const waiting = now.queues.reduce((sum, queue) => sum + queue.waiting + queue.delayed, 0);
  const active = now.queues.reduce((sum, queue) => sum + queue.active, 0);
  replace(
    root,
    h('h1', {}, 'Cluster'),
    h(
      'div',
      { class: 'tiles' },
      tile('live workers', String(now.workers.length), 'tile-workers'),
      tile('jobs waiting', integer(waiting), 'tile-waiting'),
      tile('jobs running', integer(active), 'tile-running'),
      tile('tokens/s (cluster)', rate === null ? '…' : rate.toFixed(1), 'tile-rate'),
      tile(
        'prefix-cache hit rate',
        cache.hit_rate === null ? '—' : `${(cache.hit_rate * 100).toFixed(1)}%`,
        'tile-cache',
      ),
    ),
    h('h2', {}, 'Workers'),
    table(
      ['Worker', 'Host', 'PID', 'Models', 'Capacity', 'Up', 'Heartbeat'],
      now.workers.map((worker) =>
        h(
          'tr',
          { 'data-worker': worker.id },
          h('td', {}, h('code', {}, worker.id)),
          h('td', {}, worker.host),
          h('td', { class: 'number' }, String(worker.pid)),
          h('td', {}, worker.models.join(', ')),
          h('td', { class: 'number' }, String(worker.capacity)),
          h('td', {}, duration((now.time - Date.parse(worker.started_at)) / 1000)),
          h('td', {}, `${((now.time - Date.parse(worker.heartbeat_at)) / 1000).toFixed(1)} s ago`),
        ),
      ),
      'workers',
      'No live worker.',
    ),
    h('h2', {}, 'Queues'),
    table(
      ['Model', 'Waiting', 'Running', 'Delayed', 'Completed', 'Failed'],
      now.queues.map((queue) =>
        h(
          'tr',
          { 'data-queue': queue.model },
          h('td', {}, queue.model),
          ...[queue.waiting, queue.active, queue.delayed, queue.completed, queue.failed].map((n) =>
            h('td', { class: 'number' }, integer(n)),
          ),
        ),
      ),
      'queues',
      'No model queue yet.',
    ),
    h('h2', {}, 'Throughput'),
    h(
      'p',
      {},
      `${integer(now.tokens_processed)} tokens processed by finished jobs (prompt and output), ` +
        `tokens/s over the last ${RATE_SPAN_MS / 1000} s.`,
    ),
    h('h2', {}, 'Prefix-state cache'),
    h(
      'p',
      {},
      `${counted(cache.hits, 'hit', 'hits')}, ${counted(cache.misses, 'miss', 'misses')}, ` +
        `${bytes(cache.bytes)} cached, ${counted(cache.evictions, 'eviction', 'evictions')}.`,
    ),
    h(
      'p',
      { class: 'muted' },
      `Read ${new Date(now.time).toLocaleTimeString()}; refreshed every ${REFRESH_MS / 1000} s. Operators: `,
      h('a', { href: 'admin/queues' }, 'queue dashboard'),
      ', ',
      h('a', { href: 'metrics' }, 'Prometheus metrics'),
      '.',
    ),
  );
}

/** Live workers, queue depths, tokens/s and the prefix cache: admin keys only. */
export async function clusterPage({ root, signal }: PageContext): Promise<void> {
  const readings: Cluster[] = [];
  const read = async (): Promise<void> => {
    const now = await api<Cluster>('admin/cluster');
    if (signal.aborted) return;
    readings.push(now);
    while (readings.length > 2 && now.time - (readings[0]?.time ?? now.time) > RATE_SPAN_MS) {
      readings.shift();
    }
    draw(root, readings);
  };
  try {
    await read();
  } catch (error) {
    if (error instanceof ApiFailure && error.status === 403) {
      replace(
        root,
        h('h1', {}, 'Cluster'),
        h(
          'p',
          { class: 'error', id: 'admin-only' },
          'The cluster page needs an admin key (ADMIN_API_KEYS).',
        ),
      );
      return;
    }
    throw error;
  }
  const timer = setInterval(() => {
    read().catch((error: unknown) => {
      root.append(errorNotice(messageOf(error)));
    });
  }, REFRESH_MS);
  signal.addEventListener('abort', () => {
    clearInterval(timer);
  });
}
