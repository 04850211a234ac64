import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, isLogMessage } from '#processes';
import { DEFAULT_MODEL_CHECKPOINT, DEFAULT_MODEL_ID } from '#model';
import { englishWordShare } from '#testing';
import { cli, isAlive, startLauncher, type RunningLauncher } from '../support/launcher.js';
import { waitFor } from '../support/wait.js';

interface Readiness {
  workers: { live: number; list: { pid: number }[] };
}

/** `dijiang up` (what `npm start` runs), as a user runs it: managed Redis, gateway, 2 workers. */
describe('dijiang up', () => {
  let port: number;
  let launcher: RunningLauncher | undefined;
  let children: readonly number[] = [];
  const output = (): string => launcher?.output() ?? '';
  const url = (path: string): string => `http://127.0.0.1:${port}${path}`;

  beforeAll(async () => {
    port = await freePort();
    launcher = await startLauncher([], port, { WORKERS: '2', WORKER_TTL_MS: '3000' });
    children = launcher.children;
  });
  afterAll(() => {
    launcher?.cleanUp();
  });

  it('converts the committed default model when MODEL_DIR has none, and serves it', async () => {
    expect(output()).toContain(`converting the default model ${DEFAULT_MODEL_CHECKPOINT}`);
    const body = (await (await fetch(url('/health/ready'))).json()) as {
      workers: { list: { models: string[] }[] };
    };
    expect(body.workers.list.map((worker) => worker.models)).toEqual([
      [DEFAULT_MODEL_ID],
      [DEFAULT_MODEL_ID],
    ]);
  });

  it('prints the URL and an example request', () => {
    expect(output()).toContain(`gateway http://127.0.0.1:${port}`);
    expect(output()).toContain(`curl http://127.0.0.1:${port}/health/ready`);
    expect(output()).toMatch(
      /API key {2}sk-local-[0-9a-f]{32} \(for this run: API_KEYS is unset\)/,
    );
    expect(output()).toContain(`console  http://127.0.0.1:${port}/`);
    expect(output()).toContain(`model    ${DEFAULT_MODEL_ID}`);
    expect(output()).toMatch(/ {2}redis {4}redis:\/\/127\.0\.0\.1:\d+ \(managed; data in /);
    expect(output()).toContain(`curl http://127.0.0.1:${port}/v1/completions`);
    expect(
      output()
        .split('\n')
        .some((line) => isLogMessage(line, 'gateway listening')),
    ).toBe(true);
  });

  it('runs a managed redis-server, the gateway and 2 workers as its children', async () => {
    expect(children).toHaveLength(4);
    const response = await fetch(url('/health/ready'));
    expect(response.status).toBe(200);
    const body = (await response.json()) as Readiness;
    expect(body.workers.live).toBe(2);
    for (const worker of body.workers.list) expect(children).toContain(worker.pid);
  });

  it('answers the printed example request with the printed key, in English words', async () => {
    const key = /API key {2}(\S+)/.exec(output())?.[1] ?? '';
    const example = /curl \S+\/v1\/completions .* -d '(\{.*\})'/.exec(output())?.[1] ?? '{}';
    const response = await fetch(url('/v1/completions'), {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: example,
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as {
      object: string;
      choices: { text: string }[];
      usage: { completion_tokens: number };
    };
    expect(body.object).toBe('text_completion');
    expect(body.usage.completion_tokens).toBeGreaterThan(0);
    // The trained default model writes English: most of what it says are dictionary words.
    const { words, share } = englishWordShare(body.choices[0]?.text ?? '');
    expect(words.length, body.choices[0]?.text).toBeGreaterThanOrEqual(6);
    expect(share, body.choices[0]?.text).toBeGreaterThanOrEqual(0.8);
    const unauthorized = await fetch(url('/v1/models'));
    expect(unauthorized.status).toBe(401);
  });

  it('refuses a second start on the same port, clearly', () => {
    const second = spawnSync(process.execPath, [cli, 'up'], {
      env: { ...process.env, PORT: String(port), REDIS_URL: '' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(second.status).toBe(1);
    expect(second.stderr).toContain(`127.0.0.1:${port} is already in use`);
  });

  it('shows a SIGKILLed worker gone from /health/ready within seconds', async () => {
    const body = (await (await fetch(url('/health/ready'))).json()) as Readiness;
    const victim = body.workers.list[0]?.pid ?? 0;
    process.kill(victim, 'SIGKILL');
    await waitFor(
      async () =>
        ((await (await fetch(url('/health/ready'))).json()) as Readiness).workers.live === 1,
      { timeoutMs: 10_000, message: 'the killed worker to leave /health/ready' },
    );
    expect(output()).toContain(`(pid ${victim}) exited unexpectedly: signal SIGKILL`);
  });

  it('stops every child on SIGINT (Ctrl-C) and exits 0', async () => {
    launcher?.process.kill('SIGINT');
    expect(await launcher?.exited).toBe(0);
    expect(output()).toContain('all stopped');
    for (const pid of children) expect(isAlive(pid), `pid ${pid} still running`).toBe(false);
  });
});
