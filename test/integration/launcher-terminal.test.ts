import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '#processes';
import { plainText, runInTerminal } from '../support/terminal.js';
import { waitFor } from '../support/wait.js';

const cli = fileURLToPath(new URL('../../bin/dijiang.js', import.meta.url));

/**
 * `dijiang up` in a person's terminal (a pseudo-terminal made by util-linux `script`): human log
 * lines and the banner, and JSON again with LOG_FORMAT=json. One worker on a tiny model keeps
 * each start to a few seconds; launcher.test.ts covers the cluster itself, with stdout piped.
 */
describe('dijiang up on a terminal', () => {
  let modelDir: string;

  beforeAll(() => {
    modelDir = join(mkdtempSync(join(tmpdir(), 'dijiang-up-tty-')), 'models');
    const created = spawnSync(
      process.execPath,
      [cli, 'model', 'create', '--preset', 'tiny', '--out', join(modelDir, 'tiny')],
      { encoding: 'utf8' },
    );
    expect(created.status, created.stderr).toBe(0);
  });

  /** Starts the launcher on a terminal, waits for the banner, presses Ctrl-C; what it printed. */
  async function startAndStop(env: NodeJS.ProcessEnv): Promise<{ port: number; text: string }> {
    const port = await freePort();
    const run = runInTerminal(`${process.execPath} ${cli} up`, {
      env: {
        ...process.env,
        PORT: String(port),
        WORKERS: '1',
        MODEL_DIR: modelDir,
        DATA_DIR: mkdtempSync(join(tmpdir(), 'dijiang-up-tty-data-')),
        REDIS_URL: '',
        ...env,
      },
    });
    await waitFor(() => plainText(run.output()).includes('  health '), {
      timeoutMs: 30_000,
      message: 'the launcher to print its banner',
    });
    run.type('\u0003');
    expect(await run.exited).toBe(0);
    return { port, text: plainText(run.output()) };
  }

  it('shows human log lines and a banner with the URL, key, console, model and a request', async () => {
    const { port, text } = await startAndStop({});
    const lines = text.split('\n');
    // pino-pretty's form: [time] LEVEL: service | message {fields}, and no JSON line at all.
    expect(lines.filter((line) => line.startsWith('{'))).toEqual([]);
    const listening = lines.find((line) => line.includes('gateway | gateway listening'));
    expect(listening).toMatch(
      new RegExp(
        `^\\[\\d\\d:\\d\\d:\\d\\d\\.\\d{3}\\] INFO: gateway \\| gateway listening .*"port":${port}`,
      ),
    );
    expect(lines.some((line) => /\] INFO: worker \S+ \| worker registered /.test(line))).toBe(true);
    // Nest's line per module and route is debug detail, not shown at the default level.
    expect(text).not.toContain('Mapped {');
    const url = `http://127.0.0.1:${port}`;
    expect(lines).toContain(`  URL      ${url}/v1 (OpenAI API; reference at ${url}/docs)`);
    expect(lines).toContain(`  console  ${url}/`);
    expect(lines).toContain('  model    tiny-dijiang');
    expect(text).toMatch(
      /\n {2}API key {2}sk-local-[0-9a-f]{32} \(for this run: API_KEYS is unset\)\n/,
    );
    expect(text).toMatch(
      new RegExp(`\\n {2}try {6}curl ${url}/v1/completions -H "Authorization: Bearer sk-local-`),
    );
    expect(text).toContain('[dijiang up] all stopped');
  });

  it('keeps JSON lines on a terminal with LOG_FORMAT=json', async () => {
    const { port, text } = await startAndStop({ LOG_FORMAT: 'json' });
    const listening = text
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { msg: string; service: string; port?: number })
      .find((entry) => entry.msg === 'gateway listening');
    expect(listening).toMatchObject({ service: 'gateway', port });
    expect(text).toContain(`  console  http://127.0.0.1:${port}/`);
  });

  it('refuses an unknown LOG_FORMAT, naming it', () => {
    const result = spawnSync(process.execPath, [cli, 'up'], {
      env: { ...process.env, LOG_FORMAT: 'fancy' },
      encoding: 'utf8',
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('LOG_FORMAT: expected one of auto, json, pretty (got "fancy")');
  });
});
