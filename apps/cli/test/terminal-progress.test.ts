import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parameterCount, presetConfig, storedMatrixValues } from '#model';
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
  unit: string;
  rate: string;
  eta: string;
}

/** Every frame of the progress bar the terminal received, in order. */
function barFrames(raw: string): BarFrame[] {
  const frame = /^(\w+) \[[█░]+\] (\d+)% \| (\d+)\/(\d+) (\w+) \| (\d+|-) \5\/s \| ETA (\S+)/;
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
        unit: match[5] ?? '',
        rate: match[6] ?? '',
        eta: match[7] ?? '',
      },
    ];
  });
}

/** cli-progress's time left: seconds, minutes, hours, or not known yet. */
const ETA = /^(\d+s|\d+m\d+s|\d+h\d+m|NULL|INF)$/;

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
    expect(frames.every((frame) => frame.unit === 'tokens')).toBe(true);
    expect(frames.every((frame) => frame.total === tokens)).toBe(true);
    // It moves: done only grows, from the first chunk to the whole text.
    const done = frames.map((frame) => frame.done);
    expect(done).toEqual([...done].sort((a, b) => a - b));
    expect(done.at(-1)).toBe(tokens);
    expect(new Set(frames.map((frame) => frame.percent)).size).toBeGreaterThanOrEqual(10);
    expect(frames.filter((frame) => Number(frame.rate) > 0).length).toBeGreaterThan(5);
    expect(frames.every((frame) => ETA.test(frame.eta))).toBe(true);
    expect(afterBar(terminal.raw)).toBe(pipe.stdout);
  });

  it('model create: a bar per stage, moving while the weights are drawn, on a terminal; only the summary when piped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dijiang-create-'));
    const tokenizer = join(dir, 'tokenizer.json');
    writeFileSync(tokenizer, '{"model": {"type": "BPE"}}');
    // pythia-70m takes seconds to draw, quantize and write: long enough for many frames.
    const args = (out: string) => [
      'model',
      'create',
      '--preset',
      'pythia-70m',
      '--weights',
      'int8',
      '--tokenizer',
      tokenizer,
      '--out',
      out,
    ];
    const [terminal, pipe] = await Promise.all([
      onTerminal(args(join(dir, 'terminal')).join(' ')),
      Promise.resolve(piped(...args(join(dir, 'piped')))),
    ]);
    expect(pipe.status, pipe.stderr).toBe(0);
    expect(pipe.stderr).toBe('');
    expect(pipe.stdout).toMatch(/^wrote \S+ \(model id pythia-70m-dijiang, 72226816 parameters/);

    expect(terminal.status, plainText(terminal.raw)).toBe(0);
    const frames = barFrames(terminal.raw);
    const stages = frames
      .map((frame) => frame.label)
      .filter((label, i, all) => label !== all[i - 1]);
    expect(stages).toEqual(['weights', 'quantize', 'write']);
    const config = presetConfig('pythia-70m', 'dijiang');
    const totals = {
      weights: { total: parameterCount(config), unit: 'parameters' },
      quantize: { total: storedMatrixValues(config), unit: 'parameters' },
      write: { total: statSync(join(dir, 'terminal', 'model.onnx')).size, unit: 'bytes' },
    };
    for (const [stage, { total, unit }] of Object.entries(totals)) {
      const ofStage = frames.filter((frame) => frame.label === stage);
      expect(
        ofStage.every((frame) => frame.total === total && frame.unit === unit),
        stage,
      ).toBe(true);
      const done = ofStage.map((frame) => frame.done);
      expect(done, stage).toEqual([...done].sort((a, b) => a - b));
      expect(done.at(-1), stage).toBe(total);
    }
    // The weights are drawn synchronously, and still the bar moves through them, with a rate.
    const drawing = frames.filter((frame) => frame.label === 'weights');
    const between = drawing.filter((frame) => frame.done > 0 && frame.done < frame.total);
    expect(new Set(between.map((frame) => frame.percent)).size).toBeGreaterThanOrEqual(5);
    expect(between.filter((frame) => Number(frame.rate) > 0).length).toBeGreaterThanOrEqual(5);
    expect(frames.every((frame) => ETA.test(frame.eta))).toBe(true);
    expect(afterBar(terminal.raw)).toBe(
      pipe.stdout.replace(join(dir, 'piped'), join(dir, 'terminal')),
    );
  }, 120_000);

  it('model create with a missing input says so at once on a terminal: no bar, no weights', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'dijiang-create-')), 'bundle');
    const terminal = await onTerminal(`model create --preset pythia-70m --out ${out}`);
    expect(terminal.status).toBe(1);
    // The bar starts with the first weight drawn; the error comes before it.
    expect(barFrames(terminal.raw)).toEqual([]);
    expect(plainText(terminal.raw)).toBe(
      'preset pythia-70m uses a Hugging Face tokenizer: give its tokenizer.json with --tokenizer FILE\n',
    );
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
