/** The peers benchmark's targets (ratios from the same run), its Markdown and its SVG plot. */
import { markdownTable } from './machine.js';
import type { DecodeRow, EntryResult } from './peers-rows.js';

export interface Target {
  name: string;
  /** ours / llama.cpp (or int8 / fp32); undefined where the run did not measure both sides. */
  value: number | undefined;
  target: number;
  met: boolean | undefined;
  note: string;
}

function decodeAt(
  rows: readonly DecodeRow[],
  engine: DecodeRow['engine'],
  model: string,
  precision: string,
  context: number,
  sequences: number,
): number | undefined {
  return rows.find(
    (row) =>
      row.engine === engine &&
      row.model === model &&
      row.precision === precision &&
      row.context === context &&
      row.sequences === sequences,
  )?.tokensPerSecond;
}

function ratioTarget(
  name: string,
  ours: number | undefined,
  theirs: number | undefined,
  target: number,
  missing: string,
): Target {
  if (ours === undefined || theirs === undefined) {
    return { name, value: undefined, target, met: undefined, note: missing };
  }
  const value = ours / theirs;
  return { name, value, target, met: value >= target, note: '' };
}

/**
 * llama.cpp's faster row at a point: the shared thread count or the control at fewer threads.
 * On a busy machine ggml's spinning barriers can cost it more at 2 threads than the second
 * thread gains; a target is only met against the peer at its best.
 */
function bestLlama(
  rows: readonly DecodeRow[],
  model: string,
  precision: string,
  context: number,
  sequences: number,
): number | undefined {
  const rates = rows
    .filter(
      (row) =>
        row.engine.startsWith('llama.cpp') &&
        row.model === model &&
        row.precision === precision &&
        row.context === context &&
        row.sequences === sequences,
    )
    .map((row) => row.tokensPerSecond);
  return rates.length === 0 ? undefined : Math.max(...rates);
}

/** The targets for every model and precision row the run measured on both engines. */
export function targets(
  rows: readonly DecodeRow[],
  models: readonly string[],
  precisions: readonly string[],
  concurrent: number,
  concurrentContext: number,
): Target[] {
  const list: Target[] = [];
  for (const model of models) {
    for (const precision of precisions) {
      const ours = (context: number, sequences = 1) =>
        decodeAt(rows, 'dijiang (ours)', model, precision, context, sequences);
      const theirs = (context: number, sequences = 1) =>
        bestLlama(rows, model, precision, context, sequences);
      const label = `${model} ${precision}`;
      list.push(
        ratioTarget(
          `${label}: B=1 decode at 2048, ours / llama.cpp's faster thread count`,
          ours(2048),
          theirs(2048),
          1,
          'context 2048 not measured on both engines',
        ),
        ratioTarget(
          `${label}: B=1 decode at 65536, ours / llama.cpp's faster thread count`,
          ours(65536),
          theirs(65536),
          10,
          'context 65536 not measured on both engines in this run',
        ),
        ratioTarget(
          `${label}: ${concurrent} concurrent sequences at ${concurrentContext}, aggregate ours / llama.cpp`,
          ours(concurrentContext, concurrent),
          theirs(concurrentContext, concurrent),
          1,
          concurrentContext === 2048 ? 'not measured on both engines' : 'the target is at 2048',
        ),
      );
    }
    // Memory-bound: a quarter of fp32's bytes per token. Compared at 2048 (or the first context).
    const ourContexts = rows
      .filter(
        (row) => row.model === model && row.engine === 'dijiang (ours)' && row.sequences === 1,
      )
      .map((row) => row.context);
    const context = ourContexts.includes(2048) ? 2048 : Math.min(...ourContexts);
    list.push(
      ratioTarget(
        `${model}: our 8-bit / our fp32 B=1 decode at ${context}`,
        decodeAt(rows, 'dijiang (ours)', model, '8-bit', context, 1),
        decodeAt(rows, 'dijiang (ours)', model, 'fp32', context, 1),
        2.5,
        'no 8-bit bundle of ours in this run',
      ),
    );
  }
  return list;
}

const fixed = (value: number, digits: number): string => value.toFixed(digits);
const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);

export function decodeTable(
  rows: readonly DecodeRow[],
  bandwidthGBs: number,
  peakGflops: number,
): string {
  return markdownTable(
    [
      'model',
      'precision',
      'engine',
      'context',
      'sequences',
      'tokens/s (median)',
      'rounds',
      'step ms',
      'MiB read / step',
      'GB/s',
      'of bandwidth',
      'GFLOP/s',
      'of MatMul peak',
    ],
    rows.map((row) => [
      row.model,
      row.precision,
      row.engine,
      String(row.context),
      String(row.sequences),
      fixed(row.tokensPerSecond, 1),
      row.roundTokensPerSecond.map((rate) => rate.toFixed(1)).join(', '),
      fixed(row.stepMs, 2),
      mib(row.bytesPerStep),
      fixed(row.achievedGBs, 1),
      fixed(row.achievedGBs / bandwidthGBs, 2),
      fixed(row.gflops, 1),
      fixed(row.gflops / peakGflops, 2),
    ]),
  );
}

export function prefillTable(results: readonly EntryResult[]): string {
  return markdownTable(
    ['model', 'precision', 'engine', 'prompt tokens', 'seconds', 'tokens/s'],
    results
      .flatMap((result) => result.prefill)
      .map((row) => [
        row.model,
        row.precision,
        row.engine,
        String(row.tokens),
        fixed(row.seconds, 2),
        fixed(row.tokensPerSecond, 0),
      ]),
  );
}

export function memoryTable(results: readonly EntryResult[]): string {
  return markdownTable(
    [
      'model',
      'precision',
      'context',
      'llama.cpp KV MiB / sequence',
      'our state MiB / sequence',
      'KV / state',
      'process RSS MiB',
    ],
    results
      .flatMap((result) => result.memory)
      .map((row) => [
        row.model,
        row.precision,
        String(row.context),
        mib(row.llamaKvBytes),
        mib(row.oursStateBytes),
        fixed(row.llamaKvBytes / row.oursStateBytes, 1),
        mib(row.rssBytes),
      ]),
  );
}

export function targetTable(list: readonly Target[]): string {
  return markdownTable(
    ['target', 'ratio', 'needed', 'verdict'],
    list.map((target) => [
      target.name,
      target.value === undefined ? '-' : `${fixed(target.value, 2)}x`,
      `>= ${target.target}x`,
      target.met === undefined ? `not measured (${target.note})` : target.met ? 'pass' : 'miss',
    ]),
  );
}

const COLOURS = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#ff7f0e',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#17becf',
];

/** B=1 decode tokens/s against context (log-log), one line per model, precision and engine. */
export function decodePlot(rows: readonly DecodeRow[]): string {
  const single = rows.filter((row) => row.sequences === 1);
  const series = new Map<string, DecodeRow[]>();
  for (const row of single) {
    const key = `${row.engine} ${row.model} ${row.precision}`;
    series.set(key, [...(series.get(key) ?? []), row]);
  }
  const width = 800;
  const height = 440;
  const left = 70;
  const right = 330;
  const top = 30;
  const bottom = 50;
  const contexts = single.map((row) => row.context);
  const rates = single.map((row) => row.tokensPerSecond);
  const [xMin, xMax] = [Math.min(...contexts), Math.max(...contexts)];
  const yMin = 10 ** Math.floor(Math.log10(Math.min(...rates)));
  const yMax = 10 ** Math.ceil(Math.log10(Math.max(...rates)));
  const x = (context: number): number =>
    left +
    (xMax === xMin
      ? 0.5
      : (Math.log(context) - Math.log(xMin)) / (Math.log(xMax) - Math.log(xMin))) *
      (width - left - right);
  const y = (rate: number): number =>
    top +
    (1 - (Math.log(rate) - Math.log(yMin)) / (Math.log(yMax) - Math.log(yMin))) *
      (height - top - bottom);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${left}" y="18" font-size="14">B=1 decode tokens/s vs context (log-log)</text>`,
    `<line x1="${left}" y1="${height - bottom}" x2="${width - right}" y2="${height - bottom}" stroke="black"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${height - bottom}" stroke="black"/>`,
    `<text x="${(left + width - right) / 2}" y="${height - 12}" text-anchor="middle">context (tokens)</text>`,
  ];
  for (const context of [...new Set(contexts)]) {
    parts.push(
      `<text x="${x(context).toFixed(1)}" y="${height - bottom + 16}" text-anchor="middle">${context}</text>`,
    );
  }
  for (let decade = yMin; decade <= yMax; decade *= 10) {
    parts.push(
      `<line x1="${left - 4}" y1="${y(decade).toFixed(1)}" x2="${width - right}" y2="${y(decade).toFixed(1)}" stroke="#ddd"/>`,
      `<text x="${left - 8}" y="${(y(decade) + 4).toFixed(1)}" text-anchor="end">${decade}</text>`,
    );
  }
  [...series.entries()].forEach(([label, points], index) => {
    const colour = COLOURS[index % COLOURS.length] ?? 'black';
    const dash = label.startsWith('llama.cpp') ? ' stroke-dasharray="6 4"' : '';
    const path = points
      .map((row) => `${x(row.context).toFixed(1)},${y(row.tokensPerSecond).toFixed(1)}`)
      .join(' ');
    parts.push(
      `<polyline points="${path}" fill="none" stroke="${colour}" stroke-width="2"${dash}/>`,
    );
    for (const row of points) {
      parts.push(
        `<circle cx="${x(row.context).toFixed(1)}" cy="${y(row.tokensPerSecond).toFixed(1)}" r="3" fill="${colour}"/>`,
      );
    }
    const legendY = top + 10 + index * 18;
    parts.push(
      `<line x1="${width - right + 12}" y1="${legendY}" x2="${width - right + 40}" y2="${legendY}" stroke="${colour}" stroke-width="2"${dash}/>`,
      `<text x="${width - right + 46}" y="${legendY + 4}">${label}</text>`,
    );
  });
  parts.push('</svg>', '');
  return parts.join('\n');
}
