/**
 * The `monitoring` profile without a Docker engine: Prometheus's own `promtool` checks the scrape
 * configuration and every dashboard query as PromQL; the metric names the dashboard queries are
 * read from the real registries of the gateway and the worker (nothing listed by hand); and the
 * scrape targets, ports, datasource and dashboard paths agree with docker-compose.yml.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import { Queue } from 'bullmq';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { redisKeys } from '#contracts';
import { uniquePrefix } from '#testing';
import {
  GatewayMetrics,
  MetricsExposition,
} from '../../apps/gateway/src/metrics/gateway-metrics.js';
import { WaitingWork } from '../../apps/gateway/src/metrics/waiting-work.js';
import { WorkerMetrics } from '../../apps/worker/src/worker-metrics.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string): string => readFileSync(join(root, path), 'utf8');
const PROMETHEUS_CONFIG = 'deploy/prometheus/prometheus.yml';
const DASHBOARD = 'deploy/grafana/dashboards/dijiang-cluster.json';

function promtool(...args: string[]) {
  const result = spawnSync('promtool', args, { encoding: 'utf8' });
  if (result.error !== undefined) {
    throw new Error(
      `promtool is missing (${result.error.message}): sudo apt-get install -y prometheus`,
    );
  }
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/** Every series name a registry exposes, histogram and summary series included. */
function exposedNames(registry: Registry): Set<string> {
  const names = new Set<string>();
  for (const metric of registry.getMetricsAsArray()) {
    const { name, type } = metric as unknown as { name: string; type: string };
    names.add(name);
    if (type === 'histogram')
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
    if (type === 'summary') for (const suffix of ['_sum', '_count']) names.add(name + suffix);
  }
  return names;
}

/**
 * The names the gateway's /metrics and a worker's /metrics expose, from their own classes (the
 * registries read Redis only when scraped; the test Redis backs the queue they are given).
 */
async function registeredNames(): Promise<Set<string>> {
  const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  const keys = redisKeys(uniquePrefix('monitoring'));
  const queue = new Queue('monitoring', { connection: redis, prefix: keys.prefix });
  try {
    const gateway = new GatewayMetrics(redis, keys);
    new MetricsExposition(gateway, {
      modelQueues: () => Promise.resolve(new Map([['model', queue]])),
      batchQueue: queue,
      liveWorkers: () => Promise.resolve([]),
      waitingWork: new WaitingWork(redis, keys),
    });
    const worker = new WorkerMetrics('w-1', new Map(), 8);
    return new Set([...exposedNames(gateway.registry), ...exposedNames(worker.registry)]);
  } finally {
    await queue.close();
    await redis.quit();
  }
}

interface Panel {
  type: string;
  title: string;
  datasource?: { uid: string };
  targets?: { expr: string; datasource?: { uid: string } }[];
}

const dashboard = JSON.parse(read(DASHBOARD)) as {
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; query: { query: string } }[] };
};
const queries = [
  ...dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr)),
  ...dashboard.templating.list.map((variable) => variable.query.query),
];

/** The project's metric names a query uses that no registry exposes. */
function unknownNames(expr: string, known: ReadonlySet<string>): string[] {
  return [...expr.matchAll(/\bdijiang_[a-z0-9_]+/g)]
    .map(([name]) => name)
    .filter((name) => !known.has(name));
}

describe('Prometheus scrape configuration', () => {
  it('passes promtool check config, which refuses a broken one', () => {
    const checked = promtool('check', 'config', join(root, PROMETHEUS_CONFIG));
    expect(checked.output).toContain('SUCCESS');
    expect(checked.status, checked.output).toBe(0);
    const broken = join(mkdtempSync(join(tmpdir(), 'dijiang-prom-')), 'prometheus.yml');
    writeFileSync(
      broken,
      read(PROMETHEUS_CONFIG).replace('scrape_interval: 15s', 'scrape_interval: often'),
    );
    expect(promtool('check', 'config', broken).status).not.toBe(0);
  });

  it('scrapes the gateways and every worker on the ports compose gives them', () => {
    const config = parseYaml(read(PROMETHEUS_CONFIG)) as {
      scrape_configs: { job_name: string; dns_sd_configs: { names: string[]; port: number }[] }[];
    };
    const compose = parseYaml(read('docker-compose.yml'), { merge: true }) as {
      services: Record<
        string,
        { environment?: Record<string, string | null>; profiles?: string[] }
      >;
    };
    const job = (name: string) => config.scrape_configs.find((found) => found.job_name === name);
    const gateway = job('gateway')?.dns_sd_configs[0];
    expect(gateway?.names).toEqual(['gateway']);
    expect(String(gateway?.port)).toBe(compose.services.gateway?.environment?.PORT);
    const workers = job('worker')?.dns_sd_configs[0];
    expect(workers?.names).toEqual(['worker', 'worker-cuda']);
    for (const name of workers?.names ?? []) {
      const env = compose.services[name]?.environment;
      expect(String(workers?.port), name).toBe(env?.METRICS_PORT);
      expect(env?.METRICS_HOST, name).toBe('0.0.0.0');
    }
    expect(compose.services.prometheus?.profiles).toEqual(['monitoring']);
    expect(compose.services.grafana?.profiles).toEqual(['monitoring']);
  });
});

describe('Grafana dashboard', () => {
  let known = new Set<string>();
  beforeAll(async () => {
    known = await registeredNames();
  });

  it('queries only metrics the gateway and the workers register', () => {
    expect(known.has('dijiang_time_to_first_token_seconds_bucket')).toBe(true);
    expect(known.has('dijiang_worker_decode_rows_total')).toBe(true);
    expect(queries.length).toBeGreaterThan(20);
    for (const expr of queries) expect(unknownNames(expr, known), expr).toEqual([]);
    // The check itself catches a name nobody registers.
    expect(unknownNames('rate(dijiang_tokens_per_second_total[5m])', known)).toEqual([
      'dijiang_tokens_per_second_total',
    ]);
  });

  it('every query is valid PromQL (promtool check rules)', () => {
    // Grafana's variables, as Grafana substitutes them before sending a query.
    const concrete = (expr: string): string =>
      expr
        .replaceAll('$__rate_interval', '1m')
        .replaceAll('$model', '.*')
        .replaceAll('$worker', '.*');
    const panelQueries = dashboard.panels.flatMap((panel) => panel.targets ?? []);
    const rules = {
      groups: [
        {
          name: 'dashboard',
          rules: panelQueries.map((target, index) => ({
            record: `dashboard:query_${index}`,
            expr: concrete(target.expr),
          })),
        },
      ],
    };
    const file = join(mkdtempSync(join(tmpdir(), 'dijiang-rules-')), 'rules.json');
    writeFileSync(file, JSON.stringify(rules));
    const checked = promtool('check', 'rules', file);
    expect(checked.status, checked.output).toBe(0);
    expect(checked.output).toContain(`SUCCESS: ${panelQueries.length} rules found`);
  });

  it('has the panels an operator needs', () => {
    const panels = dashboard.panels.filter((panel) => panel.type !== 'row');
    const byTitle = new Map(panels.map((panel) => [panel.title, panel]));
    const uses = (title: string, metric: string): void => {
      const exprs = (byTitle.get(title)?.targets ?? []).map((target) => target.expr).join('\n');
      expect(exprs, title).toContain(metric);
    };
    uses('Tokens/s per model', 'dijiang_worker_decode_rows_total');
    uses('Tokens/s per model', 'dijiang_completion_tokens_total');
    uses(
      'Time to first token',
      'histogram_quantile(0.95, sum by (le, model) (rate(dijiang_time_to_first_token_seconds_bucket',
    );
    uses(
      'Time per output token',
      'histogram_quantile(0.99, sum by (le, model) (rate(dijiang_time_per_output_token_seconds_bucket',
    );
    uses('Queue depth by priority', 'dijiang_queue_waiting_by_priority');
    uses('Live workers', 'dijiang_live_workers');
    uses('Prefix-cache hit rate', 'dijiang_prefix_cache{counter="hits"}');
    uses('HTTP errors by route', 'sum by (route, status)');
    uses('Batch size', 'dijiang_worker_batch_size');
    uses('Step time', 'dijiang_worker_decode_seconds_total');
    uses('Tokens/s per worker', 'dijiang_worker_prefill_tokens_total');
    uses('State bytes', 'dijiang_worker_state_bytes');
  });

  it('reads the provisioned datasource, from the folder compose mounts', () => {
    const datasources = parseYaml(
      read('deploy/grafana/provisioning/datasources/prometheus.yml'),
    ) as {
      datasources: { uid: string; url: string }[];
    };
    const [prometheus] = datasources.datasources;
    expect(prometheus?.url).toBe('http://prometheus:9090');
    for (const panel of dashboard.panels.filter((found) => found.type !== 'row')) {
      expect(panel.datasource?.uid, panel.title).toBe(prometheus?.uid);
      for (const target of panel.targets ?? [])
        expect(target.datasource?.uid).toBe(prometheus?.uid);
    }
    const providers = parseYaml(read('deploy/grafana/provisioning/dashboards/dijiang.yml')) as {
      providers: { options: { path: string } }[];
    };
    const compose = parseYaml(read('docker-compose.yml')) as {
      services: { grafana: { volumes: string[] } };
    };
    const mounts = compose.services.grafana.volumes;
    expect(mounts).toContain(
      `./deploy/grafana/dashboards:${providers.providers[0]?.options.path}:ro`,
    );
    expect(mounts).toContain('./deploy/grafana/provisioning:/etc/grafana/provisioning:ro');
  });
});
