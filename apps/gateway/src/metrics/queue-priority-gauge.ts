import type { Queue } from 'bullmq';
import { Gauge, type Registry } from 'prom-client';
import { JobPriority } from '#contracts';

/** The priority classes by their lower-case names (`interactive`, `batch`, `document`). */
const PRIORITY_CLASSES = Object.entries(JobPriority).map(
  ([name, priority]) => [name.toLowerCase(), priority] as const,
);

/**
 * `dijiang_queue_waiting_by_priority{queue,priority}`: jobs waiting in each queue per priority
 * class, read from BullMQ at scrape time. The depth of interactive work is what users feel;
 * document jobs may wait long by design.
 */
export function registerQueuePriorityGauge(
  registry: Registry,
  queues: () => Promise<Iterable<Queue>>,
): void {
  new Gauge({
    name: 'dijiang_queue_waiting_by_priority',
    help: 'Jobs waiting per queue and priority class (interactive, batch, document)',
    labelNames: ['queue', 'priority'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const queue of await queues()) {
        const counts = await queue.getCountsPerPriority(
          PRIORITY_CLASSES.map(([, priority]) => priority),
        );
        for (const [priority, value] of PRIORITY_CLASSES) {
          this.set({ queue: queue.name, priority }, counts[String(value)] ?? 0);
        }
      }
    },
  });
}
