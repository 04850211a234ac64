import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ServiceProcess } from '#processes';
import { startWorker, uniquePrefix, type TestGateway } from '#testing';
import { launchChromium } from '#testing/browser';
import { waitFor } from '../support/wait.js';
import {
  client,
  dijiang,
  greedyGenerate,
  Keys,
  startTestGateway,
} from '../gateway/support/harness.js';

/**
 * The web console in a real headless Chromium (Debian's, driven by playwright-core) against a
 * gateway, a worker serving the committed default model, and Redis. Oracles: the same model run
 * in-process by `dijiang generate` and `dijiang score` (no gateway, no Redis), and the API itself
 * for what the pages show. Every page is photographed into the test's folder, and also into
 * CONSOLE_SCREENSHOTS when set (the README's images: CONSOLE_SCREENSHOTS=docs/images). The
 * tests run in order in one browser tab, as a person would: signed in by the second test.
 */
describe('web console in headless Chromium', () => {
  const redisUrl = inject('redisUrl');
  const prefix = uniquePrefix('console');
  const work = mkdtempSync(join(tmpdir(), 'dijiang-console-'));
  const modelDir = join(work, 'austen-small');
  const shots = join(work, 'screenshots');
  const published = process.env.CONSOLE_SCREENSHOTS;
  let gateway: TestGateway;
  let worker: ServiceProcess;
  let browser: BrowserContext;
  let page: Page;

  const screenshot = async (name: string): Promise<void> => {
    const file = join(shots, `console-${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    if (published !== undefined && published !== '') {
      mkdirSync(resolve(published), { recursive: true });
      copyFileSync(file, join(resolve(published), `console-${name}.png`));
    }
  };
  const open = async (hash: string): Promise<void> => {
    await page.goto(`${gateway.url}/${hash}`);
  };
  const signIn = async (key: string): Promise<void> => {
    await open('');
    await page.fill('#api-key', key);
    await page.click('#sign-in button[type=submit]');
    await page.waitForSelector('header nav');
  };

  beforeAll(async () => {
    mkdirSync(shots, { recursive: true });
    dijiang(['model', 'convert', '--from', 'checkpoints/austen-small', '--out', modelDir]);
    [worker, gateway, browser] = await Promise.all([
      startWorker(redisUrl, { QUEUE_PREFIX: prefix, MODEL_DIR: work, WORKER_ID: 'console-worker' }),
      startTestGateway(redisUrl, prefix),
      launchChromium(),
    ]);
    page = browser.pages()[0] ?? (await browser.newPage());
  });
  afterAll(async () => {
    await browser.close();
    await gateway.service.stop();
    await worker.stop();
  });

  it('is served at / beside the API, docs, health, metrics and admin routes', async () => {
    const anonymous = client(gateway.url, undefined);
    const root = await anonymous.raw('/');
    expect(root.status).toBe(200);
    expect(root.headers.get('content-type')).toMatch(/^text\/html/);
    expect(root.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await root.text()).toContain('console/main.js');
    const script = await anonymous.raw('/console/main.js');
    expect(script.status).toBe(200);
    expect(script.headers.get('content-type')).toMatch(/^(text|application)\/javascript/);
    expect((await anonymous.raw('/console/missing.js')).status).toBe(404);
    expect((await anonymous.raw('/docs/')).status).toBe(200);
    expect((await anonymous.raw('/health/live')).status).toBe(200);
    expect((await anonymous.raw('/metrics')).status).toBe(200);
    expect((await anonymous.get('/v1/models')).status).toBe(401);
    expect((await anonymous.get('/admin/cluster')).status).toBe(401);
    expect((await client(gateway.url, Keys.alice).get('/admin/cluster')).status).toBe(403);
    const basic = `Basic ${Buffer.from(`ops:${Keys.admin}`).toString('base64')}`;
    expect((await anonymous.get('/admin/queues', { Authorization: basic })).status).toBe(200);
    const cluster = await client(gateway.url, Keys.admin).get<{ workers: { pid: number }[] }>(
      '/admin/cluster',
    );
    expect(cluster.status).toBe(200);
    expect(cluster.body.workers.map((w) => w.pid)).toEqual([worker.pid]);
  });

  it('signs in with a key kept in session storage only', async () => {
    await open('');
    await page.waitForSelector('#sign-in');
    await screenshot('sign-in');
    await page.fill('#api-key', 'sk-not-a-key-000');
    await page.click('#sign-in button[type=submit]');
    await expect(page.locator('#sign-in .error').textContent()).resolves.toContain(
      'Incorrect API key',
    );
    await signIn(Keys.alice);
    expect(await page.locator('header nav a').allTextContents()).toEqual([
      'Playground',
      'Jobs',
      'Documents',
      'Batches',
    ]);
    const storage = await page.evaluate<{ session: string | null; local: number }>(
      "({ session: sessionStorage.getItem('dijiang.apiKey'), local: localStorage.length })",
    );
    expect(storage).toEqual({ session: Keys.alice, local: 0 });
    expect(await browser.cookies()).toEqual([]);
  });

  it('streams completions and chat token by token with each token’s log-prob', async () => {
    const prompt = 'It was';
    const maxTokens = 32;
    await open('#/playground');
    await page.fill('#prompt', prompt);
    await page.fill('input[name=max_tokens]', String(maxTokens));
    await page.fill('input[name=temperature]', '0');
    const streamed = page.waitForResponse((response) => response.url().endsWith('/v1/completions'));
    await page.click('#generate');
    expect((await streamed).headers()['content-type']).toMatch(/^text\/event-stream/);
    await page.waitForSelector('#output[data-state=done]');
    const spans = page.locator('#output .token');
    expect(await spans.count()).toBe(maxTokens);
    expect(await page.locator('#output').textContent()).toBe(
      greedyGenerate(modelDir, prompt, maxTokens),
    );
    // The log-probs shown are the API's for the same greedy completion.
    const reference = await client(gateway.url, Keys.alice).post<{
      choices: { logprobs: { token_logprobs: number[] } }[];
    }>('/v1/completions', {
      model: 'austen-small',
      prompt,
      max_tokens: maxTokens,
      temperature: 0,
      logprobs: 5,
    });
    const shown: (string | null)[] = [];
    for (let i = 0; i < maxTokens; i += 1)
      shown.push(await spans.nth(i).getAttribute('data-logprob'));
    expect(shown).toEqual(
      reference.body.choices[0]?.logprobs.token_logprobs.map((value) => value.toFixed(4)),
    );
    // Greedy decoding picks the most likely token: the chosen row heads the alternatives.
    await spans.nth(1).click();
    const rows = page.locator('#token-detail table.alternatives tbody tr');
    expect(await rows.count()).toBe(5);
    expect(await rows.first().getAttribute('class')).toBe('chosen');
    await expect(page.locator('#stats').textContent()).resolves.toMatch(
      /32 tokens · .*finish: length/,
    );
    await screenshot('playground');

    // Chat streams deltas with the chat shape of log-probs; the text is the API's own answer.
    await page.selectOption('#mode', 'chat');
    await page.fill('#prompt', 'Who is Emma?');
    await page.fill('input[name=max_tokens]', '12');
    await page.click('#generate');
    await page.waitForSelector('#output[data-state=done]');
    const chat = await client(gateway.url, Keys.alice).post<{
      choices: { message: { content: string } }[];
    }>('/v1/chat/completions', {
      model: 'austen-small',
      messages: [{ role: 'user', content: 'Who is Emma?' }],
      max_tokens: 12,
      temperature: 0,
    });
    expect(await page.locator('#output .token[data-logprob]').count()).toBe(12);
    expect(await page.locator('#output').textContent()).toBe(chat.body.choices[0]?.message.content);
  });

  it('uploads a document, scores it with live progress and draws its perplexity per window', async () => {
    // Austen's prose around a stretch of this project's README: the model, trained on Austen,
    // finds the README much harder to predict, and the curve must show it.
    const austen = readFileSync('checkpoints/austen-small/valid.txt', 'utf8');
    const readme = readFileSync('README.md', 'utf8');
    const text = `${austen.slice(0, 8_000)}\n\n${readme.slice(0, 4_000)}\n\n${austen.slice(8_000, 12_000)}`;
    const file = join(work, 'austen-and-readme.txt');
    writeFileSync(file, text);
    const windowTokens = 500;

    await open('#/documents');
    await page.setInputFiles('#document-file', file);
    await page.click('#upload-form button[type=submit]');
    await page.waitForSelector('#upload-status .ok');
    const row = page.locator('#documents tbody tr').first();
    expect(await row.locator('td').nth(1).textContent()).toBe('austen-and-readme.txt');
    const documentId = (await row.getAttribute('data-document')) ?? '';
    const stored = await client(gateway.url, Keys.alice).get<{ bytes: number }>(
      `/v1/documents/${documentId}`,
    );
    expect(stored.body.bytes).toBe(Buffer.byteLength(text));
    await screenshot('documents');

    await page.fill('#window-tokens', String(windowTokens));
    await row.locator('[data-score]').click();
    await page.waitForURL(/#\/jobs\/job_/);
    const jobId = page.url().split('/').at(-1) ?? '';
    // The progress bar as the page draws it, sampled until the job completes.
    const seen: number[] = [];
    await waitFor(
      async () => {
        const now = await page
          .locator('.job-progress [role=progressbar]')
          .getAttribute('aria-valuenow');
        if (now !== null) seen.push(Number(now));
        return (await page.locator('#job-status [data-status=completed]').count()) === 1;
      },
      { timeoutMs: 30_000, intervalMs: 50, message: 'the score job to complete in the page' },
    );
    console.log('seen', JSON.stringify(seen.filter((v, i) => v !== seen[i - 1])));
    expect(seen.at(-1)).toBe(100);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));

    const oracle = dijiang(['score', '--model', modelDir, '--window', String(windowTokens), file]);
    const figure = (name: string): number =>
      Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(oracle)?.[1]);
    const windows = [...oracle.matchAll(/^window (\d+)-(\d+) perplexity (\S+)$/gm)];
    expect(windows).toHaveLength(Math.ceil(Buffer.byteLength(text) / windowTokens));
    const chart = page.locator('svg.score-chart');
    expect(Number(await chart.getAttribute('data-windows'))).toBe(windows.length);
    const points = await chart.locator('circle.point title').allTextContents();
    expect(points).toHaveLength(windows.length);
    points.forEach((title, i) => {
      expect(title).toContain(`perplexity ${Number(windows[i]?.[3]).toFixed(3)}`);
    });
    const caption = (await page.locator('figure.score figcaption').textContent()) ?? '';
    expect(caption).toContain(`perplexity ${figure('perplexity').toFixed(3)}`);
    // The README stretch (tokens 8,002 to 12,002) holds the hardest window of the text.
    const hardest = windows.reduce((a, b) => (Number(b[3]) > Number(a[3]) ? b : a));
    expect(Number(hardest[1])).toBeGreaterThanOrEqual(8_000);
    expect(Number(hardest[2])).toBeLessThanOrEqual(12_500);
    await screenshot('score-job');

    await open('#/jobs');
    const listed = page.locator(`#jobs tr[data-job="${jobId}"]`);
    await listed.waitFor();
    expect(await listed.locator('[data-status]').textContent()).toBe('completed');
    expect(await listed.locator('[role=progressbar]').getAttribute('aria-valuenow')).toBe('100');
  });

  it('lists jobs with live progress and ETA, and cancels one', async () => {
    // A score job over the whole held-out split runs long enough to be watched and cancelled.
    const alice = client(gateway.url, Keys.alice);
    const upload = await alice.raw('/v1/documents?filename=valid.txt', {
      method: 'POST',
      body: readFileSync('checkpoints/austen-small/valid.txt'),
    });
    const { id: documentId } = (await upload.json()) as { id: string };
    const started = await alice.post<{ id: string }>('/v1/jobs', {
      type: 'score',
      model: 'austen-small',
      document_id: documentId,
      window_tokens: 1000,
    });
    await open('#/jobs');
    const row = page.locator(`#jobs tr[data-job="${started.body.id}"]`);
    // Running, with an ETA and a share done shown (the list reads the job every 2 s).
    const shown = async () => ({
      eta: (await row.locator('td').nth(5).textContent()) ?? '',
      percent: Number(await row.locator('[role=progressbar]').getAttribute('aria-valuenow')),
    });
    await expect
      .poll(
        async () => {
          const { eta, percent } = await shown();
          return /^\d+ (s|min)/.test(eta) && percent > 0;
        },
        { timeout: 20_000 },
      )
      .toBe(true);
    expect((await shown()).percent).toBeLessThan(100);
    await screenshot('jobs');
    await row.locator(`[data-cancel="${started.body.id}"]`).click();
    await row.locator('[data-status=cancelled]').waitFor({ timeout: 10_000 });
    const job = await alice.get<{ status: string }>(`/v1/jobs/${started.body.id}`);
    expect(job.body.status).toBe('cancelled');
  });

  it('never shows another tenant’s job', async () => {
    const bob = client(gateway.url, Keys.bob);
    const theirs = await bob.post<{ id: string }>('/v1/jobs', {
      type: 'score',
      model: 'austen-small',
      prompt: 'Not for Alice.',
    });
    expect(theirs.status).toBe(200);
    expect((await bob.get(`/v1/jobs/${theirs.body.id}`)).status).toBe(200);
    await open(`#/jobs/${theirs.body.id}`);
    await page.waitForSelector('#not-found');
    await open('#/jobs');
    await page.waitForSelector('#jobs tr[data-job]');
    expect(await page.locator(`#jobs tr[data-job="${theirs.body.id}"]`).count()).toBe(0);
    expect(await page.locator('#jobs tr[data-job]').count()).toBe(2);
  });

  it('lists batches with their request counts', async () => {
    const alice = client(gateway.url, Keys.alice);
    const lines = ['It was', 'She said', 'Emma'].map((prompt, i) =>
      JSON.stringify({
        custom_id: `line-${i}`,
        method: 'POST',
        url: '/v1/completions',
        body: { model: 'austen-small', prompt, max_tokens: 16, temperature: 0 },
      }),
    );
    const form = new FormData();
    form.set('purpose', 'batch');
    form.set('file', new Blob([lines.join('\n')]), 'lines.jsonl');
    const file = (await (await alice.raw('/v1/files', { method: 'POST', body: form })).json()) as {
      id: string;
    };
    const batch = await alice.post<{ id: string }>('/v1/batches', {
      input_file_id: file.id,
      endpoint: '/v1/completions',
      completion_window: '24h',
    });
    await open('#/batches');
    const row = page.locator(`#batches tr[data-batch="${batch.body.id}"]`);
    await row.locator('[data-status=completed]').waitFor({ timeout: 20_000 });
    expect(await row.locator('td').nth(3).textContent()).toBe('3 done, 0 failed of 3');
    await screenshot('batches');
  });

  it('shows the cluster page to admin keys only', async () => {
    await open('#/cluster');
    await page.waitForSelector('#admin-only');
    await page.click('#sign-out');
    await signIn(Keys.admin);
    await open('#/cluster');
    await expect(page.locator('header nav a[data-page=cluster]').count()).resolves.toBe(1);
    await page.waitForSelector('#tile-workers');
    expect(await page.locator('#tile-workers .value').textContent()).toBe('1');
    expect(await page.locator('#workers tr[data-worker] td').nth(2).textContent()).toBe(
      String(worker.pid),
    );
    // Traffic while the page watches: completions sharing a prompt prefix longer than a
    // prefix-cache block, so the workers' cache sees misses, then hits.
    const shared = readFileSync('checkpoints/austen-small/valid.txt', 'utf8').slice(0, 600);
    for (const ending of [' She', ' He', ' It']) {
      const answer = await client(gateway.url, Keys.alice).post('/v1/completions', {
        model: 'austen-small',
        prompt: `${shared}${ending}`,
        max_tokens: 16,
      });
      expect(answer.status).toBe(200);
    }
    await expect
      .poll(async () => Number(await page.locator('#tile-rate .value').textContent()), {
        timeout: 10_000,
      })
      .toBeGreaterThan(0);
    const report = await client(gateway.url, Keys.admin).get<{
      prefix_cache: { hits: number; misses: number };
    }>('/admin/cluster');
    const { hits, misses } = report.body.prefix_cache;
    expect(hits).toBeGreaterThan(0);
    await expect
      .poll(async () => page.locator('#tile-cache .value').textContent())
      .toBe(`${((hits / (hits + misses)) * 100).toFixed(1)}%`);
    await screenshot('cluster');
  });
});
