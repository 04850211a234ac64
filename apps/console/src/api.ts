/**
 * The gateway's API as the console uses it. The API key lives in this tab's session storage
 * only (never local storage or cookies): closing the tab forgets it, and other sites cannot make
 * the browser send it. Every request carries it as a Bearer token; paths are relative, so the
 * console works wherever the gateway is mounted.
 */

const KEY_ITEM = 'dijiang.apiKey';
const ADMIN_ITEM = 'dijiang.admin';

export const session = {
  key: (): string | null => sessionStorage.getItem(KEY_ITEM),
  admin: (): boolean => sessionStorage.getItem(ADMIN_ITEM) === '1',
  start(key: string, admin: boolean): void {
    sessionStorage.setItem(KEY_ITEM, key);
    sessionStorage.setItem(ADMIN_ITEM, admin ? '1' : '0');
  },
  end(): void {
    sessionStorage.removeItem(KEY_ITEM);
    sessionStorage.removeItem(ADMIN_ITEM);
  },
};

/** An error answer in OpenAI's shape (`{"error": {message, type, param, code}}`). */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null,
  ) {
    super(message);
    this.name = 'ApiFailure';
  }
}

/** Called when the gateway no longer accepts the key (401): the console signs out. */
let onUnauthorized: () => void = () => undefined;
export function whenUnauthorized(handler: () => void): void {
  onUnauthorized = handler;
}

async function failure(response: Response): Promise<ApiFailure> {
  let message = `${response.status} ${response.statusText}`;
  let code: string | null = null;
  try {
    const body = (await response.json()) as { error?: { message?: string; code?: string | null } };
    message = body.error?.message ?? message;
    code = body.error?.code ?? null;
  } catch {
    // Not OpenAI's error shape (a proxy's page): the status line says enough.
  }
  return new ApiFailure(response.status, message, code);
}

/** Sends a request with the session's key; answers the response, or throws {@link ApiFailure}. */
export async function send(path: string, init: RequestInit = {}, key = session.key()) {
  const headers = new Headers(init.headers);
  if (key !== null) headers.set('Authorization', `Bearer ${key}`);
  const response = await fetch(path, { ...init, headers, credentials: 'omit', cache: 'no-store' });
  if (!response.ok) {
    const error = await failure(response);
    if (response.status === 401 && key === session.key()) onUnauthorized();
    throw error;
  }
  return response;
}

/** GET (or another method with a JSON body) answering JSON. */
export async function api<T>(path: string, init: { method?: string; body?: unknown } = {}) {
  const response = await send(path, {
    method: init.method ?? 'GET',
    ...(init.body === undefined
      ? {}
      : { body: JSON.stringify(init.body), headers: { 'Content-Type': 'application/json' } }),
  });
  return (await response.json()) as T;
}

export interface ServerSentEvent {
  id: string | undefined;
  event: string;
  data: string;
}

/**
 * Reads a `text/event-stream` response. EventSource cannot send an Authorization header, so the
 * console reads SSE from `fetch` itself: frames end with a blank line, comments start with ':'.
 */
export async function* serverSentEvents(response: Response): AsyncGenerator<ServerSentEvent> {
  if (response.body === null) return;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, '\n');
    for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event: ServerSentEvent = { id: undefined, event: 'message', data: '' };
      let fields = 0;
      for (const line of frame.split('\n')) {
        if (line === '' || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon === -1 ? line : line.slice(0, colon);
        const text = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
        fields += 1;
        if (field === 'id') event.id = text;
        else if (field === 'event') event.event = text;
        else if (field === 'data') event.data += event.data === '' ? text : `\n${text}`;
      }
      if (fields > 0) yield event;
    }
  }
}
