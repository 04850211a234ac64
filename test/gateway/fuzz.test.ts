import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniquePrefix, type TestGateway } from '#testing';
import { isOpenAiError, Keys, startTestGateway } from './support/harness.js';

const ROUTES = [
  '/v1/completions',
  '/v1/chat/completions',
  '/v1/batches',
  '/v1/jobs',
  '/v1/states',
  '/v1/documents',
  '/v1/files',
] as const;

/** Values that stress the parsers: wrong types, extremes, nesting, odd strings. */
const anyValue = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.constantFrom(-1, 0, 1, 2, 1e308, -1e308, Number.MAX_SAFE_INTEGER + 2),
  fc.string(),
  fc.constantFrom('', 'scripted', '/v1/completions', '24h', 'user', 'generate', 'score', 'digest'),
  fc.array(fc.string(), { maxLength: 6 }),
  fc.array(fc.integer(), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
);

/** Bodies that look like real requests, with fields replaced or removed at random. */
const requestLike = fc.record(
  {
    model: fc.oneof(fc.constant('fuzz-model'), anyValue),
    prompt: anyValue,
    messages: fc.oneof(
      anyValue,
      fc.array(fc.record({ role: anyValue, content: anyValue }, { requiredKeys: [] }), {
        maxLength: 3,
      }),
    ),
    temperature: anyValue,
    top_p: anyValue,
    n: anyValue,
    max_tokens: anyValue,
    stop: anyValue,
    logit_bias: anyValue,
    logprobs: anyValue,
    stream: anyValue,
    stream_options: anyValue,
    type: anyValue,
    document_id: anyValue,
    input_file_id: anyValue,
    endpoint: anyValue,
    completion_window: anyValue,
    state_id: anyValue,
    ttl_seconds: anyValue,
  },
  { requiredKeys: [] },
);

const body = fc.oneof(
  requestLike.map((value) => JSON.stringify(value)),
  fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value)),
  fc.string({ maxLength: 64 }),
);

describe('request fuzzing', () => {
  const redisUrl = inject('redisUrl');
  let gateway: TestGateway;

  beforeAll(async () => {
    // No worker serves 'fuzz-model': a body that passes validation ends in 404, so no job runs.
    gateway = await startTestGateway(redisUrl, uniquePrefix('gw-fuzz'));
  });
  afterAll(async () => {
    await gateway.service.stop();
  });

  it('never answers 5xx and always uses OpenAI’s error shape (600 cases)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...ROUTES),
        body,
        fc.constantFrom('application/json', 'text/plain'),
        async (route, text, type) => {
          const response = await fetch(`${gateway.url}${route}`, {
            method: 'POST',
            headers: { Authorization: `Bearer ${Keys.alice}`, 'Content-Type': type },
            body: text,
          });
          const raw = await response.text();
          expect(response.status, `${route} ${text}`).toBeLessThan(500);
          if (response.status >= 400) {
            expect(isOpenAiError(JSON.parse(raw)), `${route} ${text} -> ${raw}`).toBe(true);
          }
        },
      ),
      { numRuns: 600 },
    );
  });
});
