/**
 * Weight precisions of the CPU graph (after `npm run build`: `node dist/bench/weights.js`), side
 * by side in one run: for the pythia-70m and pythia-160m shapes with seeded weights, each
 * precision's graph size, its B = 1 decode step (runChunk with a non-zero state, no scheduler) and
 * a 256-token prefill chunk, in alternating rounds so that every precision sees the same shared
 * machine. Medians, and for decode also the fastest step: on a machine shared with other work the
 * fastest step is the one least disturbed, the closest to what the step itself costs. The
 * target: int8 B = 1 decode >= 2.5x fp32 (a decode step is memory-bound).
 * Results: bench/results/weights.json and weights.md. Ratios are reported, never asserted.
 *
 * Environment: BENCH_THREADS (default 2), BENCH_ROUNDS (default 3).
 */
import { mkdtemp, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  initWeights,
  presetConfig,
  WEIGHT_PRECISIONS,
  writeOnnxModel,
  type ModelConfig,
  type PresetName,
  type WeightPrecision,
} from '#model';
import { openSession, runChunk, type InferenceSession } from '#engine/runtime';
import { describeMachine, machineInfo, markdownTable, verdict } from './machine.js';
import { decodeStepRequest } from './decode-step.js';
import { median } from './stats.js';

const threads = Number(process.env.BENCH_THREADS ?? 2);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const PRESETS: PresetName[] = ['pythia-70m', 'pythia-160m'];
const DECODE_STEPS_PER_ROUND = 30;
const PREFILL_TOKENS = 256;
const PREFILL_RUNS_PER_ROUND = 2;
/** int8 decode at B = 1 against fp32: memory-bound, so a quarter of the bytes should pay. */
const TARGET_INT8_SPEEDUP = 2.5;

interface Row {
  preset: PresetName;
  weights: WeightPrecision;
  graphBytes: number;
  decodeMs: number;
  decodeSpeedup: number;
  fastestDecodeMs: number;
  fastestDecodeSpeedup: number;
  prefillTokensPerSecond: number;
  prefillSpeedup: number;
}

interface Subject {
  weights: WeightPrecision;
  session: InferenceSession;
  graphBytes: number;
  decode: number[];
  prefill: number[];
}

async function timed(run: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await run();
  return performance.now() - started;
}

async function measurePreset(preset: PresetName, dir: string): Promise<Row[]> {
  const config: ModelConfig = presetConfig(preset, 'dijiang');
  const weights = initWeights(config, 0);
  const subjects: Subject[] = [];
  for (const precision of WEIGHT_PRECISIONS) {
    const path = join(dir, `${preset}-${precision}.onnx`);
    await writeOnnxModel(config, weights, path, { weights: precision });
    subjects.push({
      weights: precision,
      session: await openSession(path, { intraOpNumThreads: threads }),
      graphBytes: (await stat(path)).size,
      decode: [],
      prefill: [],
    });
  }
  const decodeRequest = decodeStepRequest(config, 1);
  const prompt = Array.from({ length: PREFILL_TOKENS }, (_unused, t) => 5 + (t % 200));
  for (let round = 0; round < rounds; round += 1) {
    for (const subject of subjects) {
      const { session } = subject;
      const decodeStep = () => runChunk(session, config, decodeRequest);
      const prefill = () =>
        runChunk(session, config, {
          inputIds: prompt,
          batch: 1,
          chunk: PREFILL_TOKENS,
          startPos: [0],
          validLen: [PREFILL_TOKENS],
        });
      for (let warm = 0; warm < 3; warm += 1) await decodeStep();
      for (let step = 0; step < DECODE_STEPS_PER_ROUND; step += 1)
        subject.decode.push(await timed(decodeStep));
      await prefill();
      for (let run = 0; run < PREFILL_RUNS_PER_ROUND; run += 1)
        subject.prefill.push(await timed(prefill));
    }
    console.log(`${preset}: round ${round + 1} of ${rounds}`);
  }
  const base = subjects[0];
  if (base === undefined) throw new Error('no fp32 subject');
  const baseDecode = median(base.decode);
  const baseFastest = Math.min(...base.decode);
  const basePrefill = median(base.prefill);
  const rows = subjects.map((subject) => ({
    preset,
    weights: subject.weights,
    graphBytes: subject.graphBytes,
    decodeMs: median(subject.decode),
    decodeSpeedup: baseDecode / median(subject.decode),
    fastestDecodeMs: Math.min(...subject.decode),
    fastestDecodeSpeedup: baseFastest / Math.min(...subject.decode),
    prefillTokensPerSecond: PREFILL_TOKENS / (median(subject.prefill) / 1000),
    prefillSpeedup: basePrefill / median(subject.prefill),
  }));
  for (const subject of subjects) await subject.session.release();
  for (const row of rows) {
    console.log(
      `${preset} ${row.weights}: decode ${row.decodeMs.toFixed(2)} ms (${row.decodeSpeedup.toFixed(2)}x), ` +
        `fastest ${row.fastestDecodeMs.toFixed(2)} ms (${row.fastestDecodeSpeedup.toFixed(2)}x), ` +
        `prefill ${row.prefillTokensPerSecond.toFixed(0)} tokens/s (${row.prefillSpeedup.toFixed(2)}x), ` +
        `graph ${(row.graphBytes / 2 ** 20).toFixed(1)} MiB`,
    );
  }
  return rows;
}

async function main(): Promise<void> {
  const machine = machineInfo();
  const dir = await mkdtemp(join(tmpdir(), 'dijiang-bench-weights-'));
  const rows: Row[] = [];
  try {
    for (const preset of PRESETS) rows.push(...(await measurePreset(preset, dir)));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const loadAverageAtEnd = loadavg()[0] ?? Number.NaN;
  const command = 'npm run bench -- weights';
  const int8 = rows.filter((row) => row.weights === 'int8');
  const met = int8.every((row) => row.decodeSpeedup >= TARGET_INT8_SPEEDUP);
  const metFastest = int8.every((row) => row.fastestDecodeSpeedup >= TARGET_INT8_SPEEDUP);
  const result = {
    command,
    machine,
    loadAverageAtEnd,
    threads,
    rounds,
    decodeStepsPerRound: DECODE_STEPS_PER_ROUND,
    prefillTokens: PREFILL_TOKENS,
    rows,
    target: { int8DecodeSpeedup: TARGET_INT8_SPEEDUP, met, metFastest },
  };
  const markdown = [
    '# Weight precisions of the CPU graph',
    '',
    `Machine: ${describeMachine(machine)}; ${loadAverageAtEnd.toFixed(2)} at the end. Command: \`${command}\`. ` +
      `${threads} threads, ${rounds} alternating rounds; medians (and the fastest) of ${DECODE_STEPS_PER_ROUND * rounds} decode steps ` +
      `(B = 1, T = 1, the graph alone) and medians of ${PREFILL_RUNS_PER_ROUND * rounds} prefills of ${PREFILL_TOKENS} tokens. ` +
      "fp16 weights compute exactly what fp32 does (widened at load): their spread against fp32 is this run's noise.",
    '',
    markdownTable(
      [
        'shape',
        'weights',
        'graph MiB',
        'decode step ms (median)',
        'vs fp32',
        'fastest step ms',
        'vs fp32',
        'prefill tokens/s',
        'vs fp32',
      ],
      rows.map((row) => [
        row.preset,
        row.weights,
        (row.graphBytes / 2 ** 20).toFixed(1),
        row.decodeMs.toFixed(2),
        `${row.decodeSpeedup.toFixed(2)}x`,
        row.fastestDecodeMs.toFixed(2),
        `${row.fastestDecodeSpeedup.toFixed(2)}x`,
        row.prefillTokensPerSecond.toFixed(0),
        `${row.prefillSpeedup.toFixed(2)}x`,
      ]),
    ),
    '',
    `Target: int8 B = 1 decode >= ${TARGET_INT8_SPEEDUP}x fp32 on both shapes: by medians ${verdict(met)} ` +
      `(${int8.map((row) => `${row.preset} ${row.decodeSpeedup.toFixed(2)}x`).join(', ')}), ` +
      `by fastest steps ${verdict(metFastest)} ` +
      `(${int8.map((row) => `${row.preset} ${row.fastestDecodeSpeedup.toFixed(2)}x`).join(', ')}).`,
    '',
  ].join('\n');
  await mkdir('bench/results', { recursive: true });
  await writeFile('bench/results/weights.json', `${JSON.stringify(result, null, 2)}\n`);
  await writeFile('bench/results/weights.md', markdown);
  console.log(markdown);
}

await main();
