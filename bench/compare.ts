/**
 * Before/after: the engine and gateway benchmarks of another revision and of this checkout, side
 * by side in one run, in alternating rounds (base, head, head, base, …) so that a drift in the
 * shared machine's load hits both alike. The other revision is checked out in a temporary git
 * worktree, built with this checkout's node_modules, and removed afterwards.
 *
 * Usage (after `npm run build`): `node dist/bench/compare.js REVISION [ROUNDS]`, or
 * `npm run bench:compare -- REVISION [ROUNDS]`. ROUNDS (default 2) is even: each round runs both.
 * The benchmarks run with shorter settings than `npm run bench` (see SETTINGS), so their figures
 * compare the two revisions; they do not replace bench/results/engine.* and gateway.*, which this
 * script restores. Results: bench/results/before-after.{json,md}. Ratios are reported, never
 * asserted.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withEngineMallocTuning } from '#processes';
import { describeMachine, machineInfo, markdownTable } from './machine.js';
import { median } from './stats.js';

/** Shorter than the full benchmarks: the comparison needs the same work on both sides. */
const SETTINGS = {
  BENCH_BATCHES: '1,8,32',
  BENCH_DOCUMENT_TOKENS: '30000',
} as const;
const BENCHMARKS = ['engine', 'gateway'] as const;

const root = fileURLToPath(new URL('../../', import.meta.url));
const results = join(root, 'bench/results');

function git(args: readonly string[], cwd = root): string {
  const run = spawnSync('git', args, { cwd, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`git ${args.join(' ')} failed: ${run.stderr}`);
  return run.stdout.trim();
}

function run(command: string, args: readonly string[], cwd: string, env = process.env): void {
  const result = spawnSync(command, args, { cwd, stdio: 'inherit', env });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} in ${cwd} exited with ${String(result.status)}`);
  }
}

/** The figures compared, by name, from one run's engine.json and gateway.json. */
function figures(tree: string): Map<string, number> {
  const read = (name: string): unknown =>
    JSON.parse(readFileSync(join(tree, 'bench/results', `${name}.json`), 'utf8'));
  const engine = read('engine') as {
    throughput: { preset: string; batch: number; tokensPerSecond: number }[];
    pythia70mTarget: { batch1TokensPerSecond: number; batch32TokensPerSecond: number };
    interference: { unloadedP95Ms: number; loadedP95Ms: number; documentTokensPerSecond: number };
  };
  const gateway = read('gateway') as {
    latencyMs: { inProcess: { p50: number; p99: number }; gateway: { p50: number; p99: number } };
    submissions: { perSecond: number };
  };
  const result = new Map<string, number>();
  for (const row of engine.throughput) {
    result.set(`engine: ${row.preset} decode B=${row.batch}, tokens/s`, row.tokensPerSecond);
  }
  const target = engine.pythia70mTarget;
  result.set('engine: pythia-70m B=1 (alternating rounds), tokens/s', target.batch1TokensPerSecond);
  result.set(
    'engine: pythia-70m B=32 (alternating rounds), tokens/s',
    target.batch32TokensPerSecond,
  );
  result.set(
    'engine: 8 streams p95 per-token latency, unloaded, ms',
    engine.interference.unloadedP95Ms,
  );
  result.set(
    'engine: 8 streams p95 per-token latency, with a document, ms',
    engine.interference.loadedP95Ms,
  );
  result.set(
    'engine: document scored meanwhile, tokens/s',
    engine.interference.documentTokensPerSecond,
  );
  const overhead = (at: 'p50' | 'p99') =>
    gateway.latencyMs.gateway[at] - gateway.latencyMs.inProcess[at];
  result.set('gateway: completion overhead vs in-process p50, ms', overhead('p50'));
  result.set('gateway: completion overhead vs in-process p99, ms', overhead('p99'));
  result.set('gateway: async job submissions, /s', gateway.submissions.perSecond);
  return result;
}

const [revision, roundsArgument = '2'] = process.argv.slice(2);
if (revision === undefined) throw new Error('usage: compare.js REVISION [ROUNDS]');
const rounds = Number(roundsArgument);
if (!Number.isInteger(rounds) || rounds < 2 || rounds % 2 !== 0) {
  throw new Error(`ROUNDS must be an even integer >= 2, not '${roundsArgument}'`);
}
const base = git(['rev-parse', revision]);
const head = git(['rev-parse', 'HEAD']);
const command = `npm run bench:compare -- ${revision} ${rounds}`;
const machine = machineInfo();
const backup = mkdtempSync(join(tmpdir(), 'dijiang-bench-results-'));
const baseTree = mkdtempSync(join(tmpdir(), 'dijiang-bench-base-'));
const env = withEngineMallocTuning({ ...process.env, ...SETTINGS });
const samples = { base: new Map<string, number[]>(), head: new Map<string, number[]>() };
for (const name of BENCHMARKS) {
  for (const extension of ['json', 'md']) {
    const file = join(results, `${name}.${extension}`);
    if (existsSync(file)) copyFileSync(file, join(backup, `${name}.${extension}`));
  }
}
try {
  git(['worktree', 'add', '--detach', baseTree, base]);
  symlinkSync(join(root, 'node_modules'), join(baseTree, 'node_modules'));
  run('npm', ['run', 'build', '--silent'], baseTree);
  for (let round = 0; round < rounds; round += 1) {
    const order = round % 2 === 0 ? (['base', 'head'] as const) : (['head', 'base'] as const);
    for (const side of order) {
      const tree = side === 'base' ? baseTree : root;
      console.log(`== round ${round + 1}/${rounds}: ${side}`);
      for (const name of BENCHMARKS) run(process.execPath, [`dist/bench/${name}.js`], tree, env);
      for (const [figure, value] of figures(tree)) {
        samples[side].set(figure, [...(samples[side].get(figure) ?? []), value]);
      }
    }
  }
} finally {
  // The checkout's own results first: whatever else fails, they must come back.
  for (const name of BENCHMARKS) {
    for (const extension of ['json', 'md']) {
      const saved = join(backup, `${name}.${extension}`);
      if (existsSync(saved)) copyFileSync(saved, join(results, `${name}.${extension}`));
    }
  }
  rmSync(backup, { recursive: true, force: true });
  rmSync(baseTree, { recursive: true, force: true });
  // Drops the worktree's registration whether or not `worktree add` got to create it.
  git(['worktree', 'prune']);
}

const loadAverageAtEnd = loadavg()[0] ?? Number.NaN;
const rows = [...samples.head.keys()].flatMap((figure) => {
  const before = samples.base.get(figure);
  const after = samples.head.get(figure);
  if (before === undefined || after === undefined) return [];
  const medianBefore = median(before);
  const medianAfter = median(after);
  return [{ figure, before, after, medianBefore, medianAfter, ratio: medianAfter / medianBefore }];
});
await mkdir(results, { recursive: true });
await writeFile(
  join(results, 'before-after.json'),
  `${JSON.stringify({ command, machine, loadAverageAtEnd, base, head, rounds, settings: SETTINGS, rows }, null, 2)}\n`,
);
const format = (value: number) => (Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(2));
const markdown = [
  '# Before and after',
  '',
  `Command: \`${command}\`. ${describeMachine(machine)}; at the end ${loadAverageAtEnd.toFixed(2)}.`,
  '',
  `Base ${base.slice(0, 12)}, head ${head.slice(0, 12)}: the engine and gateway benchmarks of each, ` +
    `${rounds} rounds in alternating order (base first in odd rounds), medians over rounds; ` +
    `settings ${Object.entries(SETTINGS)
      .map(([name, value]) => `${name}=${value}`)
      .join(', ')}. For tokens/s and submissions/s above 1 is faster; for latencies below 1 is.`,
  '',
  markdownTable(
    ['figure', 'base', 'head', 'head / base', 'base rounds', 'head rounds'],
    rows.map((row) => [
      row.figure,
      format(row.medianBefore),
      format(row.medianAfter),
      row.ratio.toFixed(2),
      row.before.map(format).join(', '),
      row.after.map(format).join(', '),
    ]),
  ),
  '',
].join('\n');
await writeFile(join(results, 'before-after.md'), markdown);
process.stdout.write(markdown);
