/**
 * Where a B = 1 decode step's time goes (`npm run bench -- step-profile`): for the pythia-70m and
 * pythia-160m shapes, fp32 and int8 weights, onnxruntime's own profiler over the decode steps of
 * the graph (runChunk, T = 1, a non-zero state), its kernel times summed per part of the model,
 * against the wall time of the same steps. What is not in any kernel is the run's own cost: the
 * per-node dispatch, the input and output copies, and the binding from JavaScript. Also the two
 * engine-side costs of a step outside the graph, timed on their own: gathering and scattering the
 * state of a batch, and choosing the token from the logits. Redis is not on a step's path: a
 * worker writes a tick's tokens after the step, in one round trip, while the next step runs.
 * Results: bench/results/step-profile.{json,md}.
 *
 * Environment: BENCH_THREADS (default 2), BENCH_STEPS (default 200).
 */
import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  headDim,
  initWeights,
  presetConfig,
  writeOnnxModel,
  type ModelConfig,
  type PresetName,
  type WeightPrecision,
} from '#model';
import { openSession, runChunk, StateBatch, type InferenceSession } from '#engine/runtime';
import { DEFAULT_SAMPLING, TokenSampler } from '#engine';
import { describeMachine, machineInfo, markdownTable } from './machine.js';
import { decodeStepRequest } from './decode-step.js';
import { median } from './stats.js';

const threads = Number(process.env.BENCH_THREADS ?? 2);
const steps = Number(process.env.BENCH_STEPS ?? 200);
const PRESETS: PresetName[] = ['pythia-70m', 'pythia-160m'];
const PRECISIONS: WeightPrecision[] = ['fp32', 'int8'];
const WARM_STEPS = 10;

/** The parts of a step the kernels are summed into, by operator and output shape. */
type Part =
  | 'weight products'
  | 'LM head'
  | 'state update and readout'
  | 'feature map and RoPE'
  | 'norms and activations'
  | 'log-softmax normaliser'
  | 'shape and copy operators';

interface KernelEvent {
  cat: string;
  name: string;
  dur: number;
  args?: { op_name?: string; output_type_shape?: { float?: number[] }[] };
}

interface Row {
  preset: PresetName;
  weights: WeightPrecision;
  wallMsPerStep: number;
  /** The same steps under the profiler, which costs time per node of its own. */
  profiledMsPerStep: number;
  kernelMsPerStep: number;
  parts: Record<Part, number>;
  nodes: number;
  stateCopyMs: number;
  samplingMs: number;
  greedyMs: number;
}

const SHAPE_OPERATORS = new Set([
  'Reshape',
  'Transpose',
  'Split',
  'Squeeze',
  'Unsqueeze',
  'Concat',
  'Gather',
  'Slice',
  'Shape',
  'Cast',
  'Identity',
  'Range',
  'Where',
  'Less',
  'Min',
  'Max',
  'CumSum',
  'Trilu',
  'GatherElements',
]);

function partOf(event: KernelEvent, config: ModelConfig): Part {
  const op = event.args?.op_name ?? '';
  const shape = event.args?.output_type_shape?.[0]?.float ?? [];
  const last = shape.at(-1);
  const d = headDim(config);
  if ((op === 'MatMulNBits' || op === 'Gemm' || op === 'MatMul') && last === config.vocabSize) {
    return shape.length === 2 && shape[1] === 1 ? 'log-softmax normaliser' : 'LM head';
  }
  if (op === 'MatMulNBits' || op === 'Gemm' || op === 'FusedGemm') return 'weight products';
  if (op === 'MatMul' && last === 1) return 'log-softmax normaliser';
  if (
    (op === 'MatMul' || op === 'Mul' || op === 'Add') &&
    (shape.length === 4 || shape.length === 5) &&
    shape.at(-2) !== undefined &&
    (shape.at(-2) === d || shape.at(-2) === 1) &&
    last === d
  ) {
    return 'state update and readout';
  }
  if (op === 'Softmax' || op === 'MatMul' || op === 'Cos' || op === 'Sin')
    return 'feature map and RoPE';
  if (['ReduceMax', 'ReduceSum', 'Exp', 'Log', 'Sub'].includes(op) && last === config.vocabSize) {
    return 'log-softmax normaliser';
  }
  if (SHAPE_OPERATORS.has(op)) return 'shape and copy operators';
  return 'norms and activations';
}

const emptyParts = (): Record<Part, number> => ({
  'weight products': 0,
  'LM head': 0,
  'state update and readout': 0,
  'feature map and RoPE': 0,
  'norms and activations': 0,
  'log-softmax normaliser': 0,
  'shape and copy operators': 0,
});

async function profileStep(
  preset: PresetName,
  precision: WeightPrecision,
  dir: string,
): Promise<Row> {
  const config = presetConfig(preset, 'dijiang');
  const path = join(dir, `${preset}-${precision}.onnx`);
  await writeOnnxModel(config, initWeights(config, 0), path, { weights: precision });
  const profileDir = await mkdtemp(join(dir, 'profile-'));
  const request = decodeStepRequest(config, 1);
  const step = (session: InferenceSession) => runChunk(session, config, request);
  // Wall time from a session without the profiler, which costs time of its own per node.
  const plain = await openSession(path, { intraOpNumThreads: threads });
  for (let warm = 0; warm < WARM_STEPS; warm += 1) await step(plain);
  const wall: number[] = [];
  for (let index = 0; index < steps; index += 1) {
    const started = performance.now();
    await step(plain);
    wall.push(performance.now() - started);
  }
  await plain.release();
  const profiled = await openSession(path, {
    intraOpNumThreads: threads,
    profileFilePrefix: join(profileDir, 'step'),
  });
  for (let index = 0; index < WARM_STEPS + steps; index += 1) await step(profiled);
  profiled.endProfiling();
  await profiled.release();
  const [file] = await readdir(profileDir);
  if (file === undefined) throw new Error('onnxruntime wrote no profile');
  const events = JSON.parse(await readFile(join(profileDir, file), 'utf8')) as KernelEvent[];
  const kernels = events.filter(
    (event) => event.cat === 'Node' && event.name.endsWith('_kernel_time'),
  );
  // Every run executes the same nodes in turn: the timed steps are the last `steps` runs' worth.
  const nodes = kernels.length / (WARM_STEPS + steps);
  if (!Number.isInteger(nodes)) throw new Error(`runs of unequal node counts (${nodes} per run)`);
  const runs = events.filter((event) => event.cat === 'Session' && event.name === 'model_run');
  const profiledUs = median(runs.slice(WARM_STEPS).map((event) => event.dur));
  const parts = emptyParts();
  let kernelUs = 0;
  for (const event of kernels.slice(nodes * WARM_STEPS)) {
    parts[partOf(event, config)] += event.dur;
    kernelUs += event.dur;
  }
  for (const part of PARTS) parts[part] = parts[part] / steps / 1000;
  return {
    preset,
    weights: precision,
    wallMsPerStep: median(wall),
    profiledMsPerStep: profiledUs / 1000,
    kernelMsPerStep: kernelUs / steps / 1000,
    parts,
    nodes,
    ...engineSideMs(config),
  };
}

/**
 * The engine's own per-step work besides the graph: the state copies, and choosing the token as
 * the engine does, with the log-softmax normaliser the graph computed: greedy, and temperature
 * sampling over the whole vocabulary (one exp per logit).
 */
function engineSideMs(config: ModelConfig): {
  stateCopyMs: number;
  samplingMs: number;
  greedyMs: number;
} {
  const layerBlock = config.numHeads * headDim(config) ** 2;
  const batch = new StateBatch(config.numLayers, layerBlock);
  const states = [new Float32Array(config.numLayers * layerBlock).fill(0.5)];
  const logits = new Float32Array(config.vocabSize);
  let total = 0;
  for (let index = 0; index < logits.length; index += 1) {
    logits[index] = Math.sin(index) * 4;
    total += Math.exp(logits[index] ?? 0);
  }
  const normaliser = Math.log(total);
  const samplers = [0.8, 0].map(
    (temperature) => new TokenSampler({ ...DEFAULT_SAMPLING, temperature, seed: 1 }, 0, [1, 2]),
  );
  const copies: number[] = [];
  const samples: number[][] = [[], []];
  for (let index = 0; index < steps; index += 1) {
    const started = performance.now();
    batch.scatter(batch.gather(states), states);
    copies.push(performance.now() - started);
    samplers.forEach((sampler, which) => {
      const begun = performance.now();
      sampler.next(logits, normaliser);
      samples[which]?.push(performance.now() - begun);
    });
  }
  return {
    stateCopyMs: median(copies),
    samplingMs: median(samples[0] ?? []),
    greedyMs: median(samples[1] ?? []),
  };
}

const PARTS = Object.keys(emptyParts()) as Part[];

async function main(): Promise<void> {
  const machine = machineInfo();
  const dir = await mkdtemp(join(tmpdir(), 'dijiang-bench-step-profile-'));
  const rows: Row[] = [];
  try {
    for (const preset of PRESETS) {
      for (const precision of PRECISIONS) {
        const row = await profileStep(preset, precision, dir);
        rows.push(row);
        console.log(
          `${preset} ${precision}: ${row.wallMsPerStep.toFixed(2)} ms per step, kernels ${row.kernelMsPerStep.toFixed(2)} ms over ${row.nodes} nodes`,
        );
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const loadAverageAtEnd = loadavg()[0] ?? Number.NaN;
  const command = 'npm run bench -- step-profile';
  const ms = (value: number): string => value.toFixed(3);
  const share = (value: number, row: Row): string =>
    `${((100 * value) / row.profiledMsPerStep).toFixed(0)}%`;
  const markdown = [
    '# Where a B = 1 decode step goes',
    '',
    `Machine: ${describeMachine(machine)}; ${loadAverageAtEnd.toFixed(2)} at the end. Command: \`${command}\`. ` +
      `${threads} threads; ${steps} decode steps per row after ${WARM_STEPS} warm ones (B = 1, T = 1, the graph through runChunk). ` +
      "'step ms' is the median step of a session without the profiler; 'profiled step ms' the median run of a second session with it (the profiler adds a cost per node, so the small operators' share is overstated). Kernel times are the profiler's, summed per part of the model, divided by the steps, with their share of the profiled run. " +
      "'Outside kernels' is the profiled run less all kernel time: per-node dispatch and thread hand-offs inside onnxruntime. " +
      "The state copy (gather into the batch and scatter back) and choosing the token (greedy, and temperature sampling over the whole vocabulary, with the normaliser the graph computed, as the engine does) are the engine's work around the graph, timed on their own. " +
      "Redis is not on a step's path: a worker writes a tick's tokens in one round trip while the next step runs.",
    '',
    markdownTable(
      [
        'shape',
        'weights',
        'step ms',
        'nodes',
        ...PARTS,
        'outside kernels',
        'state copy',
        'sampling',
      ],
      rows.map((row) => [
        row.preset,
        row.weights,
        ms(row.wallMsPerStep),
        ms(row.profiledMsPerStep),
        String(row.nodes),
        ...PARTS.map((part) => `${ms(row.parts[part])} (${share(row.parts[part], row)})`),
        `${ms(row.profiledMsPerStep - row.kernelMsPerStep)} (${share(row.profiledMsPerStep - row.kernelMsPerStep, row)})`,
        ms(row.stateCopyMs),
        ms(row.greedyMs),
        ms(row.samplingMs),
      ]),
    ),
    '',
  ].join('\n');
  await mkdir('bench/results', { recursive: true });
  await writeFile(
    'bench/results/step-profile.json',
    `${JSON.stringify({ command, machine, loadAverageAtEnd, threads, steps, rows }, null, 2)}\n`,
  );
  await writeFile('bench/results/step-profile.md', markdown);
  process.stdout.write(`${markdown}\n`);
}

await main();
