import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { EngineStats } from '#engine';

/** What the worker's metrics read at scrape time: its engines, by model id. */
export interface EngineSource {
  readonly stats: Readonly<EngineStats>;
  readonly activeSequences: number;
  readonly stateBytes: number;
}

/** Counters kept by the engine thread as running totals, exposed under these names. */
const ENGINE_COUNTERS = [
  ['dijiang_worker_decode_steps_total', 'decodeSteps', 'Batched decode steps (one token per row)'],
  ['dijiang_worker_decode_rows_total', 'decodeRows', 'Rows of all decode steps: tokens generated'],
  ['dijiang_worker_decode_seconds_total', 'decodeSeconds', 'Time in decode steps on the graph'],
  ['dijiang_worker_prefill_chunks_total', 'prefillChunks', 'Prefill chunks run'],
  ['dijiang_worker_prefill_tokens_total', 'prefillTokens', 'Prompt and document tokens read'],
  ['dijiang_worker_prefill_seconds_total', 'prefillSeconds', 'Time in prefill chunks on the graph'],
] as const satisfies readonly (readonly [string, keyof EngineStats, string])[];

/**
 * A worker's own Prometheus metrics: per model, what its engine does (steps, rows, tokens and
 * the time they took, as counters: rate() gives tokens/s, seconds per step and the mean batch
 * size), the batch size of the latest step, the sequences it holds and their state bytes; and
 * Node process metrics. Every series carries the worker's id, so dashboards tell workers apart
 * wherever Prometheus finds them.
 */
export class WorkerMetrics {
  readonly registry = new Registry();

  constructor(workerId: string, engines: ReadonlyMap<string, EngineSource>, capacity: number) {
    this.registry.setDefaultLabels({ worker: workerId });
    collectDefaultMetrics({ register: this.registry, prefix: 'dijiang_worker_' });
    const registers = [this.registry];
    const labelNames = ['model'] as const;
    // Counters are set from the engine's own running totals at scrape time: reset, then add.
    for (const [name, field, help] of ENGINE_COUNTERS) {
      new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          for (const [model, engine] of engines) this.inc({ model }, engine.stats[field]);
        },
      });
    }
    const perModel = (read: (engine: EngineSource) => number) =>
      function collect(this: Gauge<'model'>): void {
        this.reset();
        for (const [model, engine] of engines) this.set({ model }, read(engine));
      };
    new Gauge({
      name: 'dijiang_worker_batch_size',
      help: 'Rows of the latest decode step; 0 while the engine holds no sequence',
      labelNames,
      registers,
      // The engine sends its figures with its events: an idle one sends none, and its last
      // step's rows would otherwise read as a batch running now.
      collect: perModel((engine) =>
        engine.activeSequences === 0 ? 0 : engine.stats.lastDecodeRows,
      ),
    });
    new Gauge({
      name: 'dijiang_worker_active_sequences',
      help: 'Sequences the engine holds (running, waiting for their start, or being resumed)',
      labelNames,
      registers,
      collect: perModel((engine) => engine.activeSequences),
    });
    new Gauge({
      name: 'dijiang_worker_state_bytes',
      help: 'Recurrent state bytes of the sequences the engine holds',
      labelNames,
      registers,
      collect: perModel((engine) => engine.activeSequences * engine.stateBytes),
    });
    new Gauge({
      name: 'dijiang_worker_state_bytes_per_sequence',
      help: "One sequence's recurrent state, whatever its length",
      labelNames,
      registers,
      collect: perModel((engine) => engine.stateBytes),
    });
    new Gauge({
      name: 'dijiang_worker_capacity',
      help: 'Sequences the worker runs at once per model (WORKER_CAPACITY)',
      labelNames,
      registers,
      collect: perModel(() => capacity),
    });
  }

  /**
   * Serves `GET /metrics` on `port` (0 picks a free one) until the returned server is closed;
   * resolves once it listens.
   */
  async serve(port: number, host: string): Promise<Server> {
    const server = createServer((request, response) => {
      if (request.method !== 'GET' || request.url?.split('?')[0] !== '/metrics') {
        response.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: try /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (text) => response.writeHead(200, { 'Content-Type': this.registry.contentType }).end(text),
        (error: unknown) =>
          response.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${String(error)}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject).listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return server;
  }
}

/** The port a server listens on (useful when it was asked for port 0). */
export function listeningPort(server: Server): number {
  return (server.address() as AddressInfo).port;
}
