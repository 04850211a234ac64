import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { uniquePrefix, type TestGateway } from '#testing';
import { client, Keys, startTestGateway } from './support/harness.js';

const MiB = 1024 * 1024;

/** Peak resident set size of a process (VmHWM), in bytes. */
function peakRss(pid: number): number {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match?.[1] === undefined) throw new Error(`no VmHWM for pid ${pid}`);
  return Number(match[1]) * 1024;
}

/** A body of `total` bytes produced chunk by chunk, never whole in this process either. */
function streamedBody(total: number, chunkBytes = MiB): ReadableStream<Uint8Array> {
  const chunk = new Uint8Array(chunkBytes).fill('a'.charCodeAt(0));
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= total) {
        controller.close();
        return;
      }
      const size = Math.min(chunkBytes, total - sent);
      controller.enqueue(size === chunkBytes ? chunk : chunk.subarray(0, size));
      sent += size;
    },
  });
}

describe('document upload memory', () => {
  const redisUrl = inject('redisUrl');
  let gateway: TestGateway;

  beforeAll(async () => {
    gateway = await startTestGateway(redisUrl, uniquePrefix('gw-upload'));
  });
  afterAll(async () => {
    await gateway.service.stop();
  });

  it('streams a 64 MiB document to Redis without holding it in the gateway', async () => {
    const alice = client(gateway.url, Keys.alice);
    const upload = (total: number) =>
      alice.raw('/v1/documents', {
        method: 'POST',
        body: streamedBody(total),
        duplex: 'half',
      });
    // Warm the route up so the baseline includes everything but the document itself.
    expect((await upload(2 * MiB)).status).toBe(200);
    const before = peakRss(gateway.service.pid);
    const response = await upload(64 * MiB);
    const document = (await response.json()) as { id: string; bytes: number };
    expect(response.status).toBe(200);
    expect(document.bytes).toBe(64 * MiB);
    const growth = peakRss(gateway.service.pid) - before;
    // Holding the document would add at least 64 MiB. Streamed, the gateway keeps one 1 MiB
    // buffer; the rest of the growth is socket chunks not yet garbage-collected.
    expect(growth).toBeLessThan(48 * MiB);
    expect((await alice.delete(`/v1/documents/${document.id}`)).status).toBe(200);
  });

  it('refuses a streamed (chunked) document over the limit while it arrives', async () => {
    const small = await startTestGateway(redisUrl, uniquePrefix('gw-upload-limit'), {
      MAX_DOCUMENT_BYTES: '3000000',
    });
    try {
      const response = await client(small.url, Keys.alice).raw('/v1/documents', {
        method: 'POST',
        body: streamedBody(4 * MiB, 64 * 1024),
        duplex: 'half',
      });
      expect(response.status).toBe(413);
      expect(await response.json()).toMatchObject({ error: { code: 'payload_too_large' } });
    } finally {
      await small.service.stop();
    }
  });
});
