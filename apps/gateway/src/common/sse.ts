import type { Response } from 'express';

/** A comment line this often keeps idle proxies from closing a quiet stream. @defaultValue 15 s */
const KEEPALIVE_MS = 15_000;

/** A `text/event-stream` response: `id:`/`event:`/`data:` frames, as OpenAI's clients read them. */
export class ServerSentEvents {
  private readonly keepalive: NodeJS.Timeout;

  constructor(private readonly response: Response) {
    response.status(200);
    response.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    response.setHeader('Cache-Control', 'no-cache');
    response.setHeader('Connection', 'keep-alive');
    response.setHeader('X-Accel-Buffering', 'no');
    response.flushHeaders();
    this.keepalive = setInterval(() => {
      if (!response.writableEnded) response.write(': keepalive\n\n');
    }, KEEPALIVE_MS);
  }

  /** Sends one event; objects are JSON-encoded. */
  send(data: unknown, options: { id?: string; event?: string } = {}): void {
    if (this.response.writableEnded) return;
    let frame = '';
    if (options.id !== undefined) frame += `id: ${options.id}\n`;
    if (options.event !== undefined) frame += `event: ${options.event}\n`;
    frame += `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
    this.response.write(frame);
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
