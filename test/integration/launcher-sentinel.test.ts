import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, sentinelPrimaryAddress } from '#processes';
import { DEFAULT_MODEL_ID } from '#model';
import { cli, isAlive, startLauncher, type RunningLauncher } from '../support/launcher.js';
import { waitFor } from '../support/wait.js';

/**
 * `dijiang up --redis-sentinel`: the managed Redis is a primary, a replica and three sentinels,
 * and the gateway and worker find the primary through the sentinels. What the sentinels answer
 * (`SENTINEL GET-MASTER-ADDR-BY-NAME`) is the oracle for where the cluster's data lives; the
 * in-process `dijiang generate` (no Redis) is the oracle for the text.
 */

/** One Redis connection for a single question, closed after it. */
async function ask<T>(port: number, question: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0 });
  try {
    return await question(redis);
  } finally {
    redis.disconnect();
  }
}

/** The names of the clients connected to the Redis server on `port`. */
async function clientNames(port: number): Promise<string[]> {
  const list = await ask(port, async (redis) => (await redis.call('CLIENT', 'LIST')) as string);
  return [...list.matchAll(/ name=(\S*)/g)].map((match) => match[1] ?? '').filter(Boolean);
}

describe('dijiang up --redis-sentinel', () => {
  let port: number;
  let launcher: RunningLauncher | undefined;
  let sentinelPorts: number[] = [];
  let dataDir = '';
  const output = (): string => launcher?.output() ?? '';
  const url = (path: string): string => `http://127.0.0.1:${port}${path}`;
  const primaryPort = async (): Promise<number> =>
    (await sentinelPrimaryAddress(sentinelPorts[0] ?? 0, 'dijiang')).port;

  /** The printed example request, sent with the printed key. */
  async function complete(): Promise<{ status: number; text: string }> {
    const key = /API key {2}(\S+)/.exec(output())?.[1] ?? '';
    const response = await fetch(url('/v1/completions'), {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({
        model: DEFAULT_MODEL_ID,
        prompt: 'It was',
        max_tokens: 24,
        temperature: 0,
      }),
    });
    const body = (await response.json()) as { choices?: { text: string }[] };
    return { status: response.status, text: body.choices?.[0]?.text ?? '' };
  }

  /** The same greedy continuation, in-process from the bundle the launcher built. */
  function referenceText(): string {
    const modelDir = /converting the default model \S+ into (\S+)/.exec(output())?.[1] ?? '';
    const run = spawnSync(
      process.execPath,
      [cli, 'generate', '--model', modelDir, '--max-tokens', '24', '--temperature', '0', 'It was'],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(run.status, run.stderr).toBe(0);
    return run.stdout.replace(/\n$/, '');
  }

  beforeAll(async () => {
    port = await freePort();
    launcher = await startLauncher(['--redis-sentinel'], port, { WORKERS: '1' }, 60_000);
    await waitFor(() => output().includes('  health '), { message: 'the banner' });
    const sentinels = / {2}redis {4}Sentinel "dijiang" at (\S+) /.exec(output())?.[1] ?? '';
    sentinelPorts = sentinels.split(',').map((address) => Number(address.split(':')[1]));
    dataDir = /data in (\S+)\)/.exec(output())?.[1] ?? '';
  }, 90_000);
  afterAll(() => {
    launcher?.cleanUp();
  });

  it('says it runs with Sentinel and lists three sentinels, each monitoring the primary', async () => {
    expect(sentinelPorts).toHaveLength(3);
    expect(output()).toMatch(
      /cluster up: gateway \S+, 1 worker\(s\), Redis Sentinel "dijiang" at /,
    );
    const answers = await Promise.all(
      sentinelPorts.map((sentinel) => sentinelPrimaryAddress(sentinel, 'dijiang')),
    );
    expect(new Set(answers.map((address) => `${address.host}:${address.port}`)).size).toBe(1);
    // The launcher's children: three sentinels, the primary, its replica, a gateway, a worker.
    expect(launcher?.children).toHaveLength(7);
  });

  it("puts the gateway's and the worker's connections on the primary the sentinels name", async () => {
    const primary = await primaryPort();
    expect(await ask(primary, async (redis) => ((await redis.call('ROLE')) as string[])[0])).toBe(
      'master',
    );
    const names = await clientNames(primary);
    expect(names).toContain('dijiang:gateway:commands');
    expect(names).toContain('dijiang:gateway:queue');
    expect(names.some((name) => name.startsWith('dijiang:worker:'))).toBe(true);
  });

  it('answers a completion through the gateway with the in-process greedy text', async () => {
    const answer = await complete();
    expect(answer.status).toBe(200);
    expect(answer.text.length).toBeGreaterThan(0);
    expect(answer.text).toBe(referenceText());
  });

  it('carries on after the primary is SIGKILLed: the sentinels promote the replica', async () => {
    const oldPrimary = await primaryPort();
    const pid = await ask(oldPrimary, async (redis) =>
      Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1]),
    );
    expect(launcher?.children).toContain(pid);
    process.kill(pid, 'SIGKILL');
    await waitFor(async () => (await primaryPort()) !== oldPrimary, {
      timeoutMs: 30_000,
      intervalMs: 250,
      message: 'the sentinels to name a new primary',
    });
    const promoted = await primaryPort();
    expect(await ask(promoted, async (redis) => ((await redis.call('ROLE')) as string[])[0])).toBe(
      'master',
    );
    // The clients reconnect through the sentinels within a few seconds of the promotion.
    await waitFor(async () => (await fetch(url('/health/ready'))).status === 200, {
      timeoutMs: 20_000,
      message: 'the gateway to be ready again',
    });
    const answer = await complete();
    expect(answer.status).toBe(200);
    expect(answer.text).toBe(referenceText());
    expect(output()).toContain(`(pid ${pid}) exited unexpectedly: signal SIGKILL`);
    expect(launcher?.process.exitCode).toBeNull();
  }, 90_000);

  it('stops every child on SIGINT, recording the promoted server as the next primary', async () => {
    launcher?.process.kill('SIGINT');
    expect(await launcher?.exited).toBe(0);
    for (const pid of launcher?.children ?? [])
      expect(isAlive(pid), `pid ${pid} still running`).toBe(false);
    // The replica started as server-2; after the promotion its data is the one to keep.
    expect(readFileSync(join(dataDir, 'primary'), 'utf8').trim()).toBe('server-2');
  });
});
