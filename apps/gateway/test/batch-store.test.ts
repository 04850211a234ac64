import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { gatewayKeys, type BatchRecord, type BatchStatus } from '#contracts';
import { deletePrefix, TestRedis, uniquePrefix } from '#testing';
import { BatchStore } from '../src/batches/batch-store.js';

describe('BatchStore (real Redis)', () => {
  let redis: Redis;
  let store: BatchStore;
  const prefix = uniquePrefix('batch-store');
  const gateway = gatewayKeys(prefix);
  let count = 0;

  /** A new batch's record in `status`. */
  function recordIn(status: BatchStatus): BatchRecord {
    count += 1;
    return {
      id: `batch_${count}`,
      owner: 'alice',
      status,
      endpoint: '/v1/completions',
      input_file_id: 'file-1',
      completion_window: '24h',
      created_at: 1_700_000_000 + count,
      expires_at: 1_700_086_400,
      total: 0,
      rejected: 0,
      metadata: '{"project":"x"}',
    };
  }

  /** A new batch in `status`, stored. */
  async function batchIn(status: BatchStatus): Promise<string> {
    const record = recordIn(status);
    await store.create(record);
    return record.id;
  }

  beforeAll(() => {
    redis = new Redis(inject('redisUrl'));
    store = new BatchStore(redis, gateway);
  });
  afterAll(async () => {
    await deletePrefix(redis, prefix);
    await redis.quit();
  });

  it('creates a record it reads back, indexed for its owner', async () => {
    const id = await batchIn('validating');
    expect(await store.find(id)).toMatchObject({
      id,
      owner: 'alice',
      status: 'validating',
      metadata: '{"project":"x"}',
    });
    expect((await store.pageOfIds('alice', { order: 'asc' })).ids).toContain(id);
    expect((await store.pageOfIds('bob', {})).ids).toEqual([]);
    expect(await store.find('batch_missing')).toBeUndefined();
  });

  it('runs a batch through validating, in_progress, finalizing and completed', async () => {
    const id = await batchIn('validating');
    expect(await store.transition(id, 'in_progress', {}, 100)).toBe('validating');
    expect(await store.transition(id, 'finalizing', {}, 200)).toBe('in_progress');
    expect(await store.transition(id, 'completed', { completed: 3, failed: 1 }, 300)).toBe(
      'finalizing',
    );
    expect(await store.find(id)).toMatchObject({
      status: 'completed',
      in_progress_at: 100,
      finalizing_at: 200,
      completed_at: 300,
      completed: 3,
      failed: 1,
    });
  });

  it('refuses a move its status does not allow, changing nothing', async () => {
    const id = await batchIn('validating');
    // A finalizer cannot finish a batch that has not started.
    expect(await store.transition(id, 'completed', { completed: 9 })).toBe('validating');
    expect(await store.find(id)).toMatchObject({ status: 'validating' });
    expect((await store.find(id))?.completed).toBeUndefined();
    expect((await store.find(id))?.completed_at).toBeUndefined();
  });

  it('lets a terminal batch go nowhere', async () => {
    const id = await batchIn('validating');
    await store.transition(id, 'failed', { errors: '[]' });
    for (const to of ['in_progress', 'cancelling', 'finalizing', 'completed'] as const) {
      expect(await store.transition(id, to)).toBe('failed');
    }
    expect((await store.find(id))?.status).toBe('failed');
  });

  it('cancels while validating or running, and finalizes a cancelling batch', async () => {
    const validating = await batchIn('validating');
    expect(await store.transition(validating, 'cancelling', { stop_reason: 'cancelled' })).toBe(
      'validating',
    );
    expect(await store.find(validating)).toMatchObject({
      status: 'cancelling',
      stop_reason: 'cancelled',
    });
    expect(await store.transition(validating, 'cancelled', {}, 400)).toBe('cancelling');
    expect(await store.find(validating)).toMatchObject({
      status: 'cancelled',
      cancelled_at: 400,
    });

    const finalizing = await batchIn('validating');
    await store.transition(finalizing, 'in_progress');
    await store.transition(finalizing, 'finalizing');
    // Too late to cancel: the batch stays finalizing.
    expect(await store.transition(finalizing, 'cancelling')).toBe('finalizing');
    expect((await store.find(finalizing))?.status).toBe('finalizing');
  });

  it('fails validation even after a cancel, and says so for a missing batch', async () => {
    const id = await batchIn('validating');
    await store.transition(id, 'cancelling', { stop_reason: 'cancelled' });
    expect(await store.transition(id, 'failed', { errors: '[{"code":"empty_file"}]' })).toBe(
      'cancelling',
    );
    expect(await store.find(id)).toMatchObject({
      status: 'failed',
      errors: '[{"code":"empty_file"}]',
    });
    expect(await store.transition('batch_missing', 'in_progress')).toBeUndefined();
    expect(await redis.exists(gateway.batch('batch_missing'))).toBe(0);
  });

  it('sends its script text once, then runs it by hash, even after Redis forgets it', async () => {
    // A private server: its command counts are this test's alone, and flushing its scripts
    // touches no other test.
    const server = await TestRedis.start();
    const own = new Redis(server.url);
    try {
      const ownStore = new BatchStore(own, gateway);
      const evalCalls = async (): Promise<number> => {
        const stats = await own.info('commandstats');
        return Number(/^cmdstat_eval:calls=(\d+)/m.exec(stats)?.[1] ?? 0);
      };
      await ownStore.create({ ...recordIn('validating'), id: 'b' });
      expect(await ownStore.transition('b', 'in_progress')).toBe('validating');
      expect(await ownStore.transition('b', 'finalizing')).toBe('in_progress');
      expect(await evalCalls()).toBe(1);
      await own.script('FLUSH');
      expect(await ownStore.transition('b', 'completed')).toBe('finalizing');
      expect(await evalCalls()).toBe(2);
      expect((await ownStore.find('b'))?.status).toBe('completed');
    } finally {
      await own.quit();
      await server.stop();
    }
  });

  it('keeps accepted lines in input order and rejects until dropped', async () => {
    const id = await batchIn('validating');
    const line = (n: number) => ({ customId: `c${n}`, jobId: `${id}-${n}`, model: 'tiny' });
    // More than one write chunk, given out of order.
    const accepted = Array.from({ length: 1200 }, (_, i) => [1200 - i, line(1200 - i)] as const);
    await store.saveValidatedLines(id, { total: 1201, rejects: ['{"bad":1}'], accepted });
    expect((await store.acceptedLines(id)).map((entry) => entry.customId).slice(0, 3)).toEqual([
      'c1',
      'c2',
      'c3',
    ]);
    expect(await store.acceptedLines(id)).toHaveLength(1200);
    expect(await store.rejectedLines(id)).toEqual(['{"bad":1}']);
    expect(await store.find(id)).toMatchObject({ total: 1201, rejected: 1 });
    // A validation retried after a crash replaces the rejects rather than adding to them.
    await store.saveValidatedLines(id, { total: 1201, rejects: ['{"bad":2}'], accepted });
    expect(await store.rejectedLines(id)).toEqual(['{"bad":2}']);
    await store.dropLines(id);
    expect(await store.acceptedLines(id)).toEqual([]);
    expect(await store.rejectedLines(id)).toEqual([]);
  });

  it('records why a batch stops early', async () => {
    const id = await batchIn('validating');
    await store.transition(id, 'in_progress');
    await store.setStopReason(id, 'expired');
    expect((await store.find(id))?.stop_reason).toBe('expired');
  });
});
