import type { Response } from 'express';

/** A comment line this often keeps idle proxies from closing a quiet stream. @defaultValue 15 s */
const KEEPALIVE_MS = 15_000;

/** What an event stream needs of its response (an Express response; tests pass a fake). */
export interface EventStreamResponse {
  readonly writableEnded: boolean;
  readonly writableNeedDrain: boolean;
  readonly destroyed: boolean;
  status(code: number): unknown;
  setHeader(name: string, value: string): unknown;
  flushHeaders(): void;
  write(chunk: string): boolean;
  end(): unknown;
  once(event: 'drain' | 'close', listener: () => void): unknown;
  off(event: 'drain' | 'close', listener: () => void): unknown;
}

/**
 * A `text/event-stream` response: `id:`/`event:`/`data:` frames, as OpenAI's clients read them.
 * Writes respect backpressure: once the socket's buffer is full, {@link send} resolves only when
 * it has drained (or the client has gone), so a slow reader slows the stream down instead of
 * making the gateway buffer without bound. Await each `send` before the next.
 */
export class ServerSentEvents {
  private readonly keepalive: NodeJS.Timeout;

  constructor(private readonly response: EventStreamResponse) {
    response.status(200);
    response.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    response.setHeader('Cache-Control', 'no-cache');
    response.setHeader('Connection', 'keep-alive');
    response.setHeader('X-Accel-Buffering', 'no');
    response.flushHeaders();
    this.keepalive = setInterval(() => {
      // A reader that has not taken what was sent needs no keepalive on top of it.
      if (!this.closed && !response.writableNeedDrain) response.write(': keepalive\n\n');
    }, KEEPALIVE_MS);
  }

  private get closed(): boolean {
    return this.response.writableEnded || this.response.destroyed;
  }

  /** Sends one event (objects are JSON-encoded); resolves once the response can take more. */
  async send(data: unknown, options: { id?: string; event?: string } = {}): Promise<void> {
    if (this.closed) return;
    let frame = '';
    if (options.id !== undefined) frame += `id: ${options.id}\n`;
    if (options.event !== undefined) frame += `event: ${options.event}\n`;
    frame += `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
    if (!this.response.write(frame)) await this.drained();
  }

  /** Resolves on `drain`, or on `close` when the client goes away first. */
  private async drained(): Promise<void> {
    await new Promise<void>((resolve) => {
      const settle = (): void => {
        this.response.off('drain', settle);
        this.response.off('close', settle);
        resolve();
      };
      this.response.once('drain', settle);
      this.response.once('close', settle);
    });
  }

  end(): void {
    clearInterval(this.keepalive);
    if (!this.response.writableEnded) this.response.end();
  }
}

/** An AbortSignal that fires when the client goes away before the response was finished. */
export function clientGone(response: Response): AbortSignal {
  const controller = new AbortController();
  response.on('close', () => {
    if (!response.writableFinished) controller.abort();
  });
  return controller.signal;
}
