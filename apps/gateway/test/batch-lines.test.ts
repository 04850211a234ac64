import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { redisKeys, type SavedStateMeta } from '#contracts';
import { deletePrefix, uniquePrefix } from '#testing';
import { modelNotFound, notFound } from '../src/common/api-error.js';
import { BatchLineChecker, type CheckedLine } from '../src/batches/batch-lines.js';
import { ChatPrompts } from '../src/completions/chat-template.js';

const KNOWN_MODEL = 'tiny';

/** The error-file line of a rejected input line, parsed. */
interface ErrorLine {
  custom_id: string | null;
  response: {
    status_code: number;
    request_id: null;
    body: { error: { message: string; param: string | null; code: string | null } };
  };
  error: null;
}

function rejection(checked: CheckedLine): ErrorLine {
  if (checked.accepted) throw new Error('expected the line to be rejected');
  return JSON.parse(checked.errorLine) as ErrorLine;
}

const line = (fields: Record<string, unknown>): string =>
  JSON.stringify({
    custom_id: 'req-1',
    method: 'POST',
    url: '/v1/completions',
    body: { model: KNOWN_MODEL, prompt: 'Hello', max_tokens: 4 },
    ...fields,
  });

describe('BatchLineChecker', () => {
  let redis: Redis;
  const prefix = uniquePrefix('batch-lines');
  const modelChecks: string[] = [];
  const models = {
    assertKnown: async (model: string): Promise<void> => {
      modelChecks.push(model);
      await Promise.resolve();
      if (model !== KNOWN_MODEL) throw modelNotFound(model);
    },
  };
  const states = {
    get: async (stateId: string, tenant: string, param: string | null = null) => {
      await Promise.resolve();
      if (stateId !== 'state-1' || tenant !== 'alice') throw notFound('state', stateId, param);
      const state: SavedStateMeta = {
        model: 'other-model',
        owner: 'alice',
        position: 3,
        createdAt: new Date().toISOString(),
        expiresAt: new Date().toISOString(),
      };
      return state;
    },
  };
  const checker = (endpoint: '/v1/completions' | '/v1/chat/completions' = '/v1/completions') =>
    new BatchLineChecker(
      { models, states, chatPrompts: new ChatPrompts(redis, redisKeys(prefix)) },
      { owner: 'alice', endpoint },
    );

  beforeAll(() => {
    redis = new Redis(inject('redisUrl'));
  });
  afterAll(async () => {
    await deletePrefix(redis, prefix);
    await redis.quit();
  });

  it('turns a valid completion line into a generate job for the batch owner', async () => {
    const checked = await checker().check(line({}));
    expect(checked).toMatchObject({
      accepted: true,
      customId: 'req-1',
      payload: {
        model: KNOWN_MODEL,
        owner: 'alice',
        input: { text: 'Hello' },
        sampling: { max_tokens: 4 },
      },
    });
  });

  it('renders a chat line into its prompt', async () => {
    const checked = await checker('/v1/chat/completions').check(
      line({
        url: '/v1/chat/completions',
        body: { model: KNOWN_MODEL, messages: [{ role: 'user', content: 'Hi there' }] },
      }),
    );
    if (!checked.accepted) throw new Error(checked.errorLine);
    expect(checked.payload.input).toEqual({ text: expect.stringContaining('Hi there') as string });
  });

  it('rejects a line that is not JSON, without a custom_id', async () => {
    const rejected = rejection(await checker().check('{"custom_id": "req-1", '));
    expect(rejected.custom_id).toBeNull();
    expect(rejected.response.status_code).toBe(400);
    expect(rejected.response.body.error.code).toBe('invalid_json');
    expect(rejected.error).toBeNull();
  });

  it("rejects a line whose url is not the batch's endpoint, naming its custom_id", async () => {
    const rejected = rejection(await checker().check(line({ url: '/v1/chat/completions' })));
    expect(rejected.custom_id).toBe('req-1');
    expect(rejected.response.status_code).toBe(400);
    expect(rejected.response.body.error.param).toBe('url');
  });

  it('rejects a line without a custom_id', async () => {
    const rejected = rejection(await checker().check(line({ custom_id: undefined })));
    expect(rejected.custom_id).toBeNull();
    expect(rejected.response.body.error.param).toBe('custom_id');
  });

  it('rejects the second line with the same custom_id, not the first', async () => {
    const lines = checker();
    expect((await lines.check(line({}))).accepted).toBe(true);
    const rejected = rejection(await lines.check(line({})));
    expect(rejected.custom_id).toBe('req-1');
    expect(rejected.response.body.error.code).toBe('duplicate_custom_id');
    // Another batch starts with no custom_id seen.
    expect((await checker().check(line({}))).accepted).toBe(true);
  });

  it('rejects streaming, a body the endpoint refuses, and a non-POST method', async () => {
    const lines = checker();
    const stream = rejection(await lines.check(line({ custom_id: 'a', body: { stream: true } })));
    expect(stream.response.body.error.param).toBe('body.stream');
    const body = rejection(
      await lines.check(line({ custom_id: 'b', body: { model: KNOWN_MODEL, prompt: 7 } })),
    );
    expect(body.response.body.error.param).toBe('prompt');
    const method = rejection(await lines.check(line({ custom_id: 'c', method: 'GET' })));
    expect(method.response.body.error.param).toBe('method');
  });

  it('rejects unknown models with 404, asking once per model per batch', async () => {
    modelChecks.length = 0;
    const lines = checker();
    for (const customId of ['x', 'y']) {
      const rejected = rejection(
        await lines.check(line({ custom_id: customId, body: { model: 'nope', prompt: 'a' } })),
      );
      expect(rejected.response.status_code).toBe(404);
      expect(rejected.response.body.error.code).toBe('model_not_found');
    }
    expect(modelChecks).toEqual(['nope']);
  });

  it("rejects a saved state that is missing or another model's", async () => {
    const lines = checker();
    const missing = rejection(
      await lines.check(
        line({ custom_id: 'a', body: { model: KNOWN_MODEL, prompt: 'a', state_id: 'gone' } }),
      ),
    );
    expect(missing.response.status_code).toBe(404);
    expect(missing.response.body.error.param).toBe('state_id');
    const otherModel = rejection(
      await lines.check(
        line({ custom_id: 'b', body: { model: KNOWN_MODEL, prompt: 'a', state_id: 'state-1' } }),
      ),
    );
    expect(otherModel.response.status_code).toBe(400);
    expect(otherModel.response.body.error.message).toContain('belongs to another model');
  });
});
