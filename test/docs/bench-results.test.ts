import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const resultsDir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
const jsonFiles = readdirSync(resultsDir).filter((name) => name.endsWith('.json'));

/** Every value under a key named loadAverage… anywhere in a result. */
function loadAverages(value: unknown): unknown[] {
  if (Array.isArray(value)) return value.flatMap(loadAverages);
  if (typeof value !== 'object' || value === null) return [];
  return Object.entries(value as Record<string, unknown>).flatMap(([key, inner]) =>
    key.startsWith('loadAverage') && key !== 'loadAverageNote' ? [inner] : loadAverages(inner),
  );
}

/**
 * The committed results are what the README's figures come from: each names the command that
 * produced it, in its JSON and its Markdown alike, and the machine's load while it ran (the
 * machines are shared; a busy one makes timings pessimistic).
 */
describe('bench/results', () => {
  it('holds results', () => {
    expect(jsonFiles.length).toBeGreaterThanOrEqual(7);
  });

  it.each(jsonFiles)('%s names its command in JSON and Markdown alike', (name) => {
    const result = JSON.parse(readFileSync(join(resultsDir, name), 'utf8')) as {
      command?: unknown;
    };
    expect(typeof result.command).toBe('string');
    const markdown = readFileSync(join(resultsDir, name.replace(/\.json$/, '.md')), 'utf8');
    expect(markdown).toContain(`Command: \`${String(result.command)}\``);
  });

  it.each(jsonFiles)('%s records the load average, or says why not', (name) => {
    const result = JSON.parse(readFileSync(join(resultsDir, name), 'utf8')) as {
      loadAverageNote?: unknown;
    };
    const values = loadAverages(result);
    expect(values.length).toBeGreaterThan(0);
    const recorded = values.filter((value) => typeof value === 'number' && Number.isFinite(value));
    if (recorded.length === 0) expect(typeof result.loadAverageNote).toBe('string');
  });
});

/** Numbers as written in prose and tables: digits with thousands commas and decimals. */
function numbersIn(text: string): { value: number; decimals: number }[] {
  return [...text.matchAll(/\d[\d,]*(?:\.\d+)?/g)].map(([written]) => {
    const plain = written.replaceAll(',', '');
    return { value: Number(plain), decimals: plain.split('.')[1]?.length ?? 0 };
  });
}

describe("the README's benchmark figures", () => {
  const readme = readFileSync(join(resultsDir, '../../README.md'), 'utf8');
  // The first table: the figures `npm run bench` measures (the default model's own table,
  // further down, comes from its training record and the tests that check it).
  const start = readme.indexOf('## Measured figures');
  const section = readme.slice(start, readme.indexOf('\n\n', readme.indexOf('\n|', start)));
  const rows = section
    .split('\n')
    .filter((line) => line.startsWith('| '))
    .slice(2)
    .map((line) => line.split('|').map((cell) => cell.trim()));
  const recorded = readdirSync(resultsDir)
    .filter((name) => name.endsWith('.md'))
    .flatMap((name) => numbersIn(readFileSync(join(resultsDir, name), 'utf8')));

  it('has a table of figures', () => {
    expect(rows.length).toBeGreaterThanOrEqual(10);
  });

  it.each(rows.map((cells) => [cells[1] ?? '', cells[2] ?? '']))(
    '%s: every number of "%s" is in a committed result, as rounded there',
    (_measure, result) => {
      for (const { value, decimals } of numbersIn(result)) {
        const tolerance = 0.5 * 10 ** -decimals + 1e-9;
        const found = recorded.some((candidate) => Math.abs(candidate.value - value) <= tolerance);
        expect(found, `${value} (from "${result}")`).toBe(true);
      }
    },
  );
});
