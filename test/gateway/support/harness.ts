import { expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { appEntry, startGateway, type RedisEndpoint, type TestGateway } from '#testing';

/** Runs the `dijiang` command; fails the test with its stderr when it fails. */
export function dijiang(args: string[]): string {
  const result = spawnSync(process.execPath, [appEntry('cli'), ...args], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (result.status !== 0) throw new Error(`dijiang ${args.join(' ')} failed:\n${result.stderr}`);
  return result.stdout;
}

/**
 * The oracle for greedy output through the cluster: the same bundle run in-process by
 * `dijiang generate` (no Redis, no gateway).
 */
export function greedyGenerate(modelDir: string, prompt: string, maxTokens: number): string {
  return dijiang([
    'generate',
    '--model',
    modelDir,
    '--max-tokens',
    String(maxTokens),
    '--temperature',
    '0',
    prompt,
  ]).replace(/\n$/, '');
}

/** API keys of the test tenants. */
export const Keys = {
  alice: 'sk-alice-0123456789',
  bob: 'sk-bob-0123456789',
  admin: 'sk-admin-0123456789',
} as const;

export async function startTestGateway(
  redis: string | RedisEndpoint,
  prefix: string,
  env: Record<string, string> = {},
): Promise<TestGateway> {
  return startGateway(redis, {
    QUEUE_PREFIX: prefix,
    API_KEYS: `alice:${Keys.alice},bob:${Keys.bob}`,
    ADMIN_API_KEYS: `ops:${Keys.admin}`,
    RATE_LIMIT_RPM: '0',
    ...env,
  });
}

export interface Reply<T = unknown> {
  status: number;
  body: T;
  headers: Headers;
}

/** A minimal HTTP client for one tenant (the openai client is used where OpenAI's API applies). */
export function client(baseUrl: string, key: string | undefined) {
  const headers = (extra: Record<string, string> = {}): Record<string, string> => ({
    ...(key === undefined ? {} : { Authorization: `Bearer ${key}` }),
    ...extra,
  });
  const reply = async <T>(response: Response): Promise<Reply<T>> => {
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // Not JSON (file contents, HTML): the text is the body.
    }
    return { status: response.status, body: body as T, headers: response.headers };
  };
  return {
    get: async <T = unknown>(path: string, extra?: Record<string, string>) =>
      reply<T>(await fetch(`${baseUrl}${path}`, { headers: headers(extra) })),
    delete: async <T = unknown>(path: string) =>
      reply<T>(await fetch(`${baseUrl}${path}`, { method: 'DELETE', headers: headers() })),
    post: async <T = unknown>(path: string, body?: unknown) =>
      reply<T>(
        await fetch(`${baseUrl}${path}`, {
          method: 'POST',
          headers: headers({ 'Content-Type': 'application/json' }),
          ...(body === undefined
            ? {}
            : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
        }),
      ),
    raw: (path: string, init: RequestInit = {}) =>
      fetch(`${baseUrl}${path}`, {
        ...init,
        headers: headers(init.headers as Record<string, string> | undefined),
      }),
  };
}

export interface SseEvent {
  id: string | undefined;
  event: string | undefined;
  data: string;
}

/** Parses a `text/event-stream` body into events (comments skipped). */
export async function* sseEvents(response: Response): AsyncGenerator<SseEvent> {
  if (response.body === null) return;
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of response.body) {
    buffer += decoder.decode(chunk as Uint8Array, { stream: true });
    let boundary = buffer.indexOf('\n\n');
    while (boundary !== -1) {
      const frame = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      boundary = buffer.indexOf('\n\n');
      const event: SseEvent = { id: undefined, event: undefined, data: '' };
      let isEvent = false;
      for (const line of frame.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = line.slice(0, colon);
        const value = line.slice(colon + 2);
        isEvent = true;
        if (field === 'id') event.id = value;
        else if (field === 'event') event.event = value;
        else if (field === 'data') event.data += value;
      }
      if (isEvent) yield event;
    }
  }
}

/** OpenAI's error shape, exactly. */
/** The reply is an error of `status` in OpenAI's shape whose `error` has `fields`. */
export function expectError(reply: Reply, status: number, fields: Record<string, unknown> = {}) {
  expect(reply.status).toBe(status);
  expect(isOpenAiError(reply.body)).toBe(true);
  expect((reply.body as { error: Record<string, unknown> }).error).toMatchObject(fields);
}

export function isOpenAiError(body: unknown): boolean {
  if (typeof body !== 'object' || body === null) return false;
  const error = (body as { error?: unknown }).error;
  if (typeof error !== 'object' || error === null) return false;
  const { message, type, param, code } = error as Record<string, unknown>;
  return (
    Object.keys(error).sort().join() === 'code,message,param,type' &&
    typeof message === 'string' &&
    message.length > 0 &&
    typeof type === 'string' &&
    (param === null || typeof param === 'string') &&
    (code === null || typeof code === 'string')
  );
}
