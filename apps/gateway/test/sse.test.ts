import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ServerSentEvents } from '../src/common/sse.js';

/** A response whose reader takes one chunk per `delayMs` (or none at all: `stalled`). */
class SlowResponse extends Writable {
  readonly received: string[] = [];
  /** The most bytes ever waiting in the response's buffer. */
  maxBuffered = 0;
  statusCode = 0;

  constructor(
    highWaterMark: number,
    private readonly delayMs: number | 'stalled',
  ) {
    super({ highWaterMark, decodeStrings: false });
  }

  override _write(chunk: string, _encoding: BufferEncoding, done: () => void): void {
    this.maxBuffered = Math.max(this.maxBuffered, this.writableLength);
    this.received.push(chunk);
    if (this.delayMs !== 'stalled') setTimeout(done, this.delayMs);
  }

  status(code: number): this {
    this.statusCode = code;
    return this;
  }
  setHeader(): this {
    return this;
  }
  flushHeaders(): void {
    // Headers are not modelled.
  }
}

const HIGH_WATER_MARK = 1024;
const EVENTS = 300;

describe('ServerSentEvents', () => {
  it('waits for a slow reader instead of buffering every event', async () => {
    const response = new SlowResponse(HIGH_WATER_MARK, 1);
    const sse = new ServerSentEvents(response);
    const payload = 'x'.repeat(100);
    let frameBytes = 0;
    for (let index = 0; index < EVENTS; index += 1) {
      await sse.send({ index, payload }, { id: `1-${index}` });
      frameBytes = Math.max(frameBytes, response.writableLength);
    }
    sse.end();
    await new Promise((resolve) => response.once('finish', resolve));

    // Without waiting for 'drain', ~40 KB would pile up; with it, at most one frame past the mark.
    const frame = `id: 1-0\ndata: ${JSON.stringify({ index: 0, payload })}\n\n`.length + 8;
    expect(response.maxBuffered).toBeLessThanOrEqual(HIGH_WATER_MARK + frame);
    expect(frameBytes).toBeLessThanOrEqual(HIGH_WATER_MARK + frame);
    // Every event arrived, in order.
    const ids = response.received.join('').match(/^id: (\S+)$/gm);
    expect(ids).toEqual(Array.from({ length: EVENTS }, (_, index) => `id: 1-${index}`));
  });

  it('stops waiting when the client goes away, and sends nothing more', async () => {
    const response = new SlowResponse(64, 'stalled');
    const sse = new ServerSentEvents(response);
    const first = sse.send('x'.repeat(200));
    let settled = false;
    void first.then(() => {
      settled = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(settled).toBe(false);
    response.destroy();
    await first;
    await sse.send('after the client left');
    sse.end();
    expect(response.received.join('')).not.toContain('after the client left');
  });
});
