import { FlowProducer, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { bullJobKey, modelQueueName, type BatchLine, type GenerateResult } from '#contracts';
import { deletePrefix, uniquePrefix } from '#testing';
import { joinLines, openAiBatchUsage, type FinishedBatch } from '../src/batches/batch-output.js';

const PREFIX = 'dijiang';
const MODEL = 'tiny';

const result = (text: string, finishReason: 'stop' | 'cancelled' = 'stop'): GenerateResult => ({
  choices: [{ index: 0, text, finishReason }],
  usage: { promptTokens: 5, completionTokens: 3, cachedTokens: 2 },
});

const batchLine = (customId: string, number: number): BatchLine => ({
  customId,
  jobId: `batch_1-${number}`,
  model: MODEL,
});

const keyOf = (line: BatchLine): string =>
  bullJobKey(PREFIX, modelQueueName(line.model), line.jobId);

interface FileLine {
  custom_id: string | null;
  response: {
    status_code: number;
    request_id: string | null;
    body: { object: string; choices: { text?: string; message?: { content: string } }[] };
  } | null;
  error: { code: string; message: string } | null;
}

const parsed = (lines: string[]): FileLine[] => lines.map((line) => JSON.parse(line) as FileLine);

describe('joinLines', () => {
  const ok = batchLine('ok', 1);
  const failed = batchLine('failed', 2);
  const malformed = batchLine('malformed', 3);
  const notRun = batchLine('not-run', 4);
  const interrupted = batchLine('interrupted', 5);
  const rejected = JSON.stringify({ id: 'r', custom_id: 'bad', response: null, error: null });
  const finished = (overrides: Partial<FinishedBatch> = {}): FinishedBatch => ({
    record: { endpoint: '/v1/completions', created_at: 1_700_000_000 },
    prefix: PREFIX,
    lines: [ok, failed, malformed, notRun, interrupted],
    values: {
      [keyOf(ok)]: result('fine'),
      [keyOf(malformed)]: { not: 'a result' },
      [keyOf(interrupted)]: result('', 'cancelled'),
    },
    failures: { [keyOf(failed)]: 'the worker crashed' },
    rejects: [rejected],
    stop: undefined,
    ...overrides,
  });

  it('puts each result under its own custom_id: successes in the output file', () => {
    const joined = joinLines(finished());
    const output = parsed(joined.output);
    expect(output.map((line) => line.custom_id)).toEqual(['ok', 'interrupted']);
    expect(output[0]?.response).toMatchObject({
      status_code: 200,
      request_id: ok.jobId,
      body: { object: 'text_completion', choices: [{ text: 'fine' }] },
    });
    expect(output[0]?.error).toBeNull();
    expect(joined.usage).toEqual({ input: 10, cached: 4, output: 6 });
    expect(openAiBatchUsage(joined.usage)).toMatchObject({ total_tokens: 16 });
  });

  it('puts rejected lines first in the error file, then failed, malformed and unrun lines', () => {
    const errors = parsed(joinLines(finished()).errors);
    expect(errors[0]).toEqual(JSON.parse(rejected));
    expect(errors.slice(1).map((line) => [line.custom_id, line.error?.code])).toEqual([
      ['failed', 'server_error'],
      ['malformed', 'server_error'],
      ['not-run', 'batch_cancelled'],
    ]);
    expect(errors[1]?.error?.message).toBe('the worker crashed');
    expect(errors[2]?.error?.message).toBe('the worker returned a malformed result');
  });

  it('counts a line the stop interrupted before it produced anything as not run', () => {
    const joined = joinLines(finished({ stop: 'expired' }));
    expect(parsed(joined.output).map((line) => line.custom_id)).toEqual(['ok']);
    expect(parsed(joined.errors).slice(3)).toMatchObject([
      { custom_id: 'not-run', error: { code: 'batch_expired' } },
      { custom_id: 'interrupted', error: { code: 'batch_expired' } },
    ]);
  });

  it('answers chat batches in the chat completion shape', () => {
    const joined = joinLines(
      finished({ record: { endpoint: '/v1/chat/completions', created_at: 1 }, lines: [ok] }),
    );
    expect(parsed(joined.output)[0]?.response?.body).toMatchObject({
      object: 'chat.completion',
      choices: [{ message: { content: 'fine' } }],
    });
  });
});

describe('bullJobKey (real Redis)', () => {
  let connection: Redis;
  const prefix = uniquePrefix('bull-key');

  beforeAll(() => {
    connection = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  });
  afterAll(async () => {
    await deletePrefix(connection, prefix);
    await connection.quit();
  });

  it("is the key under which a flow's parent sees its children's values and failures", async () => {
    const childQueue = modelQueueName(MODEL);
    let reportParent: (seen: { values: string[]; failures: string[] }) => void = () => undefined;
    const parentSaw = new Promise<{ values: string[]; failures: string[] }>((resolve) => {
      reportParent = resolve;
    });
    const parents = new Worker(
      'parents',
      async (job: Job) => {
        reportParent({
          values: Object.keys(await job.getChildrenValues()),
          failures: Object.keys(await job.getIgnoredChildrenFailures()),
        });
      },
      { connection, prefix },
    );
    const children = new Worker(
      childQueue,
      async (job: Job) => {
        await Promise.resolve();
        if (job.id === 'fails') throw new Error('no');
        return 'value';
      },
      { connection, prefix },
    );
    const flows = new FlowProducer({ connection, prefix });
    await flows.add({
      name: 'parent',
      queueName: 'parents',
      children: ['succeeds', 'fails'].map((jobId) => ({
        name: 'child',
        queueName: childQueue,
        opts: { jobId, attempts: 1, ignoreDependencyOnFailure: true },
      })),
    });
    expect(await parentSaw).toEqual({
      values: [bullJobKey(prefix, childQueue, 'succeeds')],
      failures: [bullJobKey(prefix, childQueue, 'fails')],
    });
    await Promise.all([parents.close(), children.close(), flows.close()]);
  });
});
