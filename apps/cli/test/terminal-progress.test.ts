import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { testModelDir } from '#testing';
import { plainText, runInTerminal } from '../../../test/support/terminal.js';

const cli = fileURLToPath(new URL('../../../bin/dijiang.js', import.meta.url));

function piped(...args: string[]) {
  const result = spawnSync(process.execPath, [cli, ...args], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Runs the CLI on a pseudo-terminal; its whole output and exit code. */
async function onTerminal(args: string): Promise<{ raw: string; status: number | null }> {
  const run = runInTerminal(`${process.execPath} ${cli} ${args}`);
  const status = await run.exited;
  return { raw: run.output(), status };
}

interface BarFrame {
  label: string;
  percent: number;
  done: number;
  total: number;
  rate: string;
  eta: string;
}

/** Every frame of the progress bar the terminal received, in order. */
function barFrames(raw: string): BarFrame[] {
  const frame = /^(\w+) \[[█░]+\] (\d+)% \| (\d+)\/(\d+) tokens \| (\d+|-) tokens\/s \| ETA (\S+)/;
  // cli-progress redraws each frame from the first column (ESC [1G).
  return raw.split('\u001b[1G').flatMap((segment) => {
    const match = frame.exec(plainText(segment));
    if (match === null) return [];
    return [
      {
        label: match[1] ?? '',
        percent: Number(match[2]),
        done: Number(match[3]),
        total: Number(match[4]),
        rate: match[5] ?? '',
        eta: match[6] ?? '',
      },
    ];
  });
}

/** What follows the bar: it clears its line (ESC [2K) once the work is done. */
function afterBar(raw: string): string {
  return plainText(raw.slice(raw.lastIndexOf('\u001b[2K') + '\u001b[2K'.length));
}

describe('progress on a terminal, nothing extra when piped', () => {
  let book: string;
  beforeAll(() => {
    // About 300 kB of prose, as a person would score: long enough for many frames.
    const dir = mkdtempSync(join(tmpdir(), 'dijiang-progress-'));
    book = join(dir, 'book.txt');
    const valid = readFileSync(
      fileURLToPath(new URL('../../../checkpoints/austen-small/valid.txt', import.meta.url)),
      'utf8',
    );
    writeFileSync(book, (valid + valid).slice(0, 300_000));
  });

  it('score: a live bar with tokens/s and ETA on a terminal, the same figures as piped', async () => {
    const args = ['score', '--model', testModelDir(), '--window', '100000', book];
    const [terminal, pipe] = await Promise.all([
      onTerminal(args.join(' ')),
      Promise.resolve(piped(...args)),
    ]);
    expect(pipe.status, pipe.stderr).toBe(0);
    // Piped: the figures and nothing else, no bar on stderr.
    expect(pipe.stderr).toBe('');
    const tokens = Number(
      /^tokens (\d+)\ntotal_nll \d+\.\d{6}\nperplexity \d+\.\d{6}\n/.exec(pipe.stdout)?.[1],
    );
    expect(tokens).toBe(Buffer.byteLength(readFileSync(book)));

    expect(terminal.status).toBe(0);
    const frames = barFrames(terminal.raw);
    expect(frames.length).toBeGreaterThanOrEqual(10);
    expect(new Set(frames.map((frame) => frame.label))).toEqual(new Set(['score']));
    expect(frames.every((frame) => frame.total === tokens)).toBe(true);
    // It moves: done only grows, from the first chunk to the whole text.
    const done = frames.map((frame) => frame.done);
    expect(done).toEqual([...done].sort((a, b) => a - b));
    expect(done.at(-1)).toBe(tokens);
    expect(new Set(frames.map((frame) => frame.percent)).size).toBeGreaterThanOrEqual(10);
    expect(frames.filter((frame) => Number(frame.rate) > 0).length).toBeGreaterThan(5);
    expect(frames.every((frame) => /^(\d+s|\d+m\d+s|\d+h\d+m|NULL|INF)$/.test(frame.eta))).toBe(
      true,
    );
    expect(afterBar(terminal.raw)).toBe(pipe.stdout);
  });

  it('score --json prints the result as JSON, the figures of the text form', () => {
    const text = 'It was a truth universally acknowledged.';
    const file = join(mkdtempSync(join(tmpdir(), 'dijiang-json-')), 'short.txt');
    writeFileSync(file, text);
    const plain = piped('score', '--model', testModelDir(), '--window', '16', file);
    const json = piped('score', '--model', testModelDir(), '--window', '16', '--json', file);
    expect(json.status, json.stderr).toBe(0);
    expect(json.stderr).toBe('');
    const result = JSON.parse(json.stdout) as {
      tokens: number;
      totalNll: number;
      perplexity: number;
      windows: { start: number; end: number; nll: number; perplexity: number }[];
    };
    const lines = plain.stdout.trim().split('\n');
    expect(lines[0]).toBe(`tokens ${result.tokens}`);
    expect(lines[1]).toBe(`total_nll ${result.totalNll.toFixed(6)}`);
    expect(lines[2]).toBe(`perplexity ${result.perplexity.toFixed(6)}`);
    expect(result.tokens).toBe(text.length);
    expect(result.windows.map(({ start, end }) => [start, end])).toEqual([
      [0, 16],
      [16, 32],
      [32, text.length],
    ]);
    expect(lines.slice(3)).toEqual(
      result.windows.map(
        (window) =>
          `window ${window.start}-${window.end} perplexity ${window.perplexity.toFixed(6)}`,
      ),
    );
  });

  it('generate: the prompt, then the tokens, on a terminal while the text goes to a file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dijiang-generate-'));
    const prompt = join(dir, 'prompt.txt');
    writeFileSync(prompt, readFileSync(book, 'utf8').slice(0, 20_000));
    const args = `generate --model ${testModelDir()} --temperature 0 --max-tokens 200 "$(cat ${prompt})"`;
    const terminal = await onTerminal(`${args} > ${join(dir, 'out.txt')}`);
    expect(terminal.status).toBe(0);
    const frames = barFrames(terminal.raw);
    expect(new Set(frames.map((frame) => frame.label)), plainText(terminal.raw)).toEqual(
      new Set(['prompt', 'generate']),
    );
    expect(frames.some((frame) => frame.label === 'prompt' && frame.total === 20_000)).toBe(true);
    expect(frames.some((frame) => frame.label === 'generate' && frame.total === 200)).toBe(true);
    const pipe = spawnSync('sh', ['-c', `${process.execPath} ${cli} ${args}`], {
      encoding: 'utf8',
    });
    expect(pipe.status, pipe.stderr).toBe(0);
    // The same text, and on stderr only the summary line.
    expect(readFileSync(join(dir, 'out.txt'), 'utf8')).toBe(pipe.stdout);
    expect(pipe.stderr).toMatch(
      /^\[\d+ tokens, finish reason \w+, [\d.]+ tokens\/s, seed \d+\]\n$/,
    );
  });
});
