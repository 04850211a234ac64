import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { JobPriority, modelQueueName } from '#contracts';
import { queueOptions } from '#cluster';
import { deletePrefix, uniquePrefix } from '#testing';
import { registerQueuePriorityGauge } from '../src/metrics/queue-priority-gauge.js';

describe('dijiang_queue_waiting_by_priority (real Redis, real BullMQ queue)', () => {
  let connection: Redis;
  let queue: Queue;
  const prefix = uniquePrefix('priority-gauge');

  beforeAll(() => {
    connection = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
    queue = new Queue(modelQueueName('m'), queueOptions(connection, prefix));
  });
  afterAll(async () => {
    await queue.close();
    await deletePrefix(connection, prefix);
    await connection.quit();
  });

  it('counts the waiting jobs of each priority class, as BullMQ holds them', async () => {
    const waiting = { Interactive: 1, Batch: 2, Document: 3 } as const;
    for (const [name, count] of Object.entries(waiting)) {
      for (let index = 0; index < count; index += 1) {
        await queue.add('generate', {}, { priority: JobPriority[name as keyof typeof waiting] });
      }
    }
    const registry = new Registry();
    registerQueuePriorityGauge(registry, () => Promise.resolve([queue]));
    const lines = (await registry.metrics())
      .split('\n')
      .filter((line) => line.startsWith('dijiang_queue_waiting_by_priority{'));
    expect(lines.sort()).toEqual(
      [
        `dijiang_queue_waiting_by_priority{queue="${queue.name}",priority="interactive"} 1`,
        `dijiang_queue_waiting_by_priority{queue="${queue.name}",priority="batch"} 2`,
        `dijiang_queue_waiting_by_priority{queue="${queue.name}",priority="document"} 3`,
      ].sort(),
    );
  });
});
