import { Redis } from 'ioredis';
import redisErrors from 'redis-errors';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createLogger, createRedis, type RedisClient } from '#cluster';
import { freePort } from '#processes';
import { isRedisOutage } from '../src/common/redis-outage.js';

/** What a rejected promise rejected with. */
async function rejection(work: Promise<unknown>): Promise<unknown> {
  try {
    await work;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('isRedisOutage (errors ioredis really raises)', () => {
  const clients: RedisClient[] = [];
  afterAll(() => {
    for (const client of clients) client.disconnect();
  });

  it('recognises a refused connection and the fail-fast client rejecting commands', async () => {
    const port = await freePort();
    const client = createRedis(
      `redis://127.0.0.1:${port}`,
      'commands',
      'outage-test',
      createLogger('outage-test', 'silent'),
    );
    clients.push(client);
    const connectionError = new Promise<unknown>((resolve) => client.once('error', resolve));
    const connect = await rejection(client.connect());
    // The socket's own error carries Node's system error code.
    const refused = await connectionError;
    expect((refused as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
    expect(isRedisOutage(refused, true)).toBe(true);
    // The rejected connect itself is a plain Error ("Connection is closed.").
    expect(isRedisOutage(connect, false)).toBe(true);

    // While it reconnects, its commands fail with plain Errors: the client's state tells.
    const command = await rejection(client.get('key'));
    expect(command).toBeInstanceOf(Error);
    expect(client.status).not.toBe('ready');
    expect(isRedisOutage(command, client.status === 'ready')).toBe(true);
    // The same error while the client is connected is not an outage (it is answered 500).
    expect(isRedisOutage(command, true)).toBe(false);
  });

  it('recognises aborted commands, and never an answer from Redis', async () => {
    expect(isRedisOutage(new redisErrors.AbortError('Command aborted'), true)).toBe(true);
    const redis = new Redis(inject('redisUrl'));
    clients.push(redis);
    const reply = await rejection(redis.call('NO-SUCH-COMMAND'));
    expect(reply).toBeInstanceOf(redisErrors.ReplyError);
    expect(isRedisOutage(reply, true)).toBe(false);
    expect(isRedisOutage(reply, false)).toBe(false);
    expect(isRedisOutage(new TypeError('a bug'), true)).toBe(false);
  });
});
