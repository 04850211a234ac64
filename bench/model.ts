/**
 * Model benchmarks (run after `npm run build` as `node dist/bench/model.js`): decode-step latency
 * and per-sequence memory vs context length, prefill throughput vs document length, and achieved
 * prefill GFLOP/s against a measured fp32 MatMul peak, for the pythia-70m shape with DiJiang and
 * with the softmax baseline, in the same run on the same onnxruntime CPU session options.
 * Results: bench/results/model.json and model.md. Reported as ratios, never asserted.
 *
 * Environment: BENCH_CONTEXTS (default 1024,4096,16384,65536), BENCH_PREFILL (default
 * 2048,8192,32768,65536), BENCH_SOFTMAX_PREFILL_MAX (default 16384: the baseline's prefill is
 * quadratic), BENCH_THREADS (default 2), BENCH_PRESET (default pythia-70m).
 */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import {
  GraphBuilder,
  IR_VERSION,
  OPSET_VERSION,
  TensorDataType,
  encodeModel,
  headDim,
  initWeights,
  isPresetName,
  kvBytesPerToken,
  openSession,
  presetConfig,
  runChunk,
  stateBytesPerSequence,
  writeOnnxModel,
  type AttentionKind,
  type ModelConfig,
} from '#model';

function listFromEnv(name: string, fallback: number[]): number[] {
  const value = process.env[name];
  return value === undefined ? fallback : value.split(',').map(Number);
}

const contexts = listFromEnv('BENCH_CONTEXTS', [1024, 4096, 16384, 65536]);
const prefillLengths = listFromEnv('BENCH_PREFILL', [2048, 8192, 32768, 65536]);
const softmaxPrefillMax = Number(process.env.BENCH_SOFTMAX_PREFILL_MAX ?? 16384);
const threads = Number(process.env.BENCH_THREADS ?? 2);
const presetName = process.env.BENCH_PRESET ?? 'pythia-70m';
if (!isPresetName(presetName)) throw new Error(`BENCH_PRESET ${presetName} is not a preset`);
/** Prefill chunk: bounds the [H, T, T] intra-chunk matrices. */
const PREFILL_CHUNK = 512;
const DECODE_REPEATS = 20;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

/** fp32 MatMul peak: [n, n] x [n, n] in the same runtime and thread count. */
async function matmulPeakGflops(dir: string, n: number): Promise<number> {
  const g = new GraphBuilder();
  const a = g.input('a', TensorDataType.Float, [n, n]);
  const weight = g.initializer(
    'w',
    TensorDataType.Float,
    [n, n],
    Float32Array.from({ length: n * n }, (_, i) => (i % 7) / 7),
  );
  g.output('y', g.op('MatMul', [a, weight]), TensorDataType.Float, [n, n]);
  const path = join(dir, 'matmul.onnx');
  await writeFile(
    path,
    encodeModel({
      irVersion: IR_VERSION,
      producerName: 'bench',
      producerVersion: '0',
      docString: '',
      opsetImport: [{ domain: '', version: OPSET_VERSION }],
      metadataProps: [],
      graph: {
        name: 'matmul',
        node: g.nodes,
        initializer: g.initializers.map((init) => ({
          name: init.name,
          dims: [...init.dims],
          dataType: init.dataType,
          rawData: init.bytes,
        })),
        input: g.inputs,
        output: g.outputs,
      },
    }),
  );
  const session = await openSession(path, { intraOpNumThreads: threads });
  const feeds = { a: new ort.Tensor('float32', new Float32Array(n * n).fill(0.5), [n, n]) };
  await session.run(feeds);
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const start = performance.now();
    await session.run(feeds);
    times.push(performance.now() - start);
  }
  await session.release();
  return (2 * n ** 3) / (median(times) / 1000) / 1e9;
}

/** Forward FLOPs of a prefill of `length` tokens in chunks (matmuls only; the LM head once per chunk). */
function prefillFlops(config: ModelConfig, length: number, chunk: number): number {
  const h = config.hiddenSize;
  const d = headDim(config);
  const perTokenLinear =
    2 *
    config.numLayers *
    (4 * h * h + 2 * h * config.intermediateSize + (config.attention === 'dijiang' ? h * h : 0));
  let attention = 0;
  for (let start = 0; start < length; start += chunk) {
    const t = Math.min(chunk, length - start);
    const past = config.attention === 'softmax' ? start : 0;
    // DiJiang: feature maps, intra-chunk scores and values, state read and update.
    const perHead =
      config.attention === 'dijiang'
        ? 2 * (2 * t * d * d + 2 * t * t * d + 2 * t * d * d)
        : 2 * (2 * t * (past + t) * d);
    attention += config.numLayers * config.numHeads * perHead;
  }
  const chunks = Math.ceil(length / chunk);
  return perTokenLinear * length + attention + chunks * 2 * h * config.vocabSize;
}

interface AttentionResults {
  attention: AttentionKind;
  decode: { context: number; stepMs: number; bytesPerSequence: number }[];
  prefill: { length: number; tokensPerSecond: number; gflops: number }[];
}

async function benchAttention(dir: string, attention: AttentionKind): Promise<AttentionResults> {
  const config = presetConfig(presetName as Parameters<typeof presetConfig>[0], attention);
  const path = join(dir, `${attention}.onnx`);
  await writeOnnxModel(config, initWeights(config, 0), path);
  const session = await openSession(path, { intraOpNumThreads: threads });
  const d = headDim(config);
  const results: AttentionResults = { attention, decode: [], prefill: [] };

  for (const context of contexts) {
    // The step's cost does not depend on the state's values: zeros stand in for a real history.
    const kvSize = config.numLayers * config.numHeads * context * d;
    const carried =
      attention === 'dijiang'
        ? {}
        : {
            kv: { key: new Float32Array(kvSize), value: new Float32Array(kvSize), length: context },
          };
    const request = {
      inputIds: [1],
      batch: 1,
      chunk: 1,
      startPos: [context],
      validLen: [1],
      ...carried,
    };
    await runChunk(session, config, request);
    const times: number[] = [];
    for (let i = 0; i < DECODE_REPEATS; i++) {
      const start = performance.now();
      await runChunk(session, config, request);
      times.push(performance.now() - start);
    }
    const bytesPerSequence =
      attention === 'dijiang' ? stateBytesPerSequence(config) : kvBytesPerToken(config) * context;
    results.decode.push({ context, stepMs: median(times), bytesPerSequence });
    console.log(
      `${attention} decode @${context}: ${median(times).toFixed(2)} ms, ${bytesPerSequence} bytes`,
    );
  }

  for (const length of prefillLengths) {
    if (attention === 'softmax' && length > softmaxPrefillMax) continue;
    const ids = Array.from({ length }, (_, i) => (i * 7919) % config.vocabSize);
    const start = performance.now();
    let carried = {};
    for (let position = 0; position < length; position += PREFILL_CHUNK) {
      const size = Math.min(PREFILL_CHUNK, length - position);
      const result = await runChunk(session, config, {
        inputIds: ids.slice(position, position + size),
        batch: 1,
        chunk: size,
        startPos: [position],
        validLen: [size],
        ...carried,
      });
      carried = attention === 'dijiang' ? { state: result.state } : { kv: result.kv };
    }
    const seconds = (performance.now() - start) / 1000;
    const gflops = prefillFlops(config, length, PREFILL_CHUNK) / seconds / 1e9;
    results.prefill.push({ length, tokensPerSecond: length / seconds, gflops });
    console.log(
      `${attention} prefill ${length}: ${(length / seconds).toFixed(0)} tok/s, ${gflops.toFixed(1)} GFLOP/s`,
    );
  }
  await session.release();
  return results;
}

const dir = await mkdtemp(join(tmpdir(), 'dijiang-bench-'));
const peak = await matmulPeakGflops(dir, 2048);
console.log(`fp32 MatMul peak (2048^3, ${threads} threads): ${peak.toFixed(1)} GFLOP/s`);
const dijiang = await benchAttention(dir, 'dijiang');
const softmax = await benchAttention(dir, 'softmax');

const firstStep = dijiang.decode[0]?.stepMs ?? Number.NaN;
const lastContext = contexts[contexts.length - 1] ?? 0;
const lastDijiang =
  dijiang.decode.find((entry) => entry.context === lastContext)?.stepMs ?? Number.NaN;
const lastSoftmax =
  softmax.decode.find((entry) => entry.context === lastContext)?.stepMs ?? Number.NaN;
const prefillRates = dijiang.prefill.map((entry) => entry.tokensPerSecond);
const summary = {
  preset: presetName,
  threads,
  matmulPeakGflops: peak,
  dijiangStepRatioLastVsFirstContext: lastDijiang / firstStep,
  softmaxOverDijiangStepAtLastContext: lastSoftmax / lastDijiang,
  dijiangPrefillSpread:
    (Math.max(...prefillRates) - Math.min(...prefillRates)) / Math.max(...prefillRates),
  dijiangPrefillPeakFraction: Math.max(...dijiang.prefill.map((entry) => entry.gflops)) / peak,
};
await mkdir('bench/results', { recursive: true });
await writeFile(
  'bench/results/model.json',
  `${JSON.stringify({ summary, dijiang, softmax }, null, 2)}\n`,
);
const table = (rows: string[][]): string => rows.map((row) => `| ${row.join(' | ')} |`).join('\n');
const markdown = [
  `# Model benchmarks (${presetName} shape, onnxruntime CPU, ${threads} threads)`,
  '',
  'Made by `npm run build && node dist/bench/model.js`.',
  '',
  `fp32 MatMul peak: ${peak.toFixed(1)} GFLOP/s.`,
  '',
  '## Decode step vs context',
  '',
  table([
    ['context', 'DiJiang ms', 'DiJiang bytes/seq', 'softmax ms', 'softmax KV bytes/seq'],
    ['---', '---', '---', '---', '---'],
    ...contexts.map((context) => {
      const a = dijiang.decode.find((entry) => entry.context === context);
      const b = softmax.decode.find((entry) => entry.context === context);
      return [
        String(context),
        a?.stepMs.toFixed(2) ?? '-',
        String(a?.bytesPerSequence ?? '-'),
        b?.stepMs.toFixed(2) ?? '-',
        String(b?.bytesPerSequence ?? '-'),
      ];
    }),
  ]),
  '',
  `DiJiang step at ${lastContext} / at ${contexts[0] ?? 0}: ${summary.dijiangStepRatioLastVsFirstContext.toFixed(3)} (target <= 1.1). Softmax / DiJiang at ${lastContext}: ${summary.softmaxOverDijiangStepAtLastContext.toFixed(2)}x (target >= 5).`,
  '',
  '## Prefill',
  '',
  table([
    ['length', 'attention', 'tokens/s', 'GFLOP/s', 'fraction of MatMul peak'],
    ['---', '---', '---', '---', '---'],
    ...[
      ...dijiang.prefill.map((entry) => ({ ...entry, attention: 'dijiang' })),
      ...softmax.prefill.map((entry) => ({ ...entry, attention: 'softmax' })),
    ].map((entry) => [
      String(entry.length),
      entry.attention,
      entry.tokensPerSecond.toFixed(0),
      entry.gflops.toFixed(1),
      (entry.gflops / peak).toFixed(2),
    ]),
  ]),
  '',
  `DiJiang prefill spread (max-min)/max: ${summary.dijiangPrefillSpread.toFixed(3)} (target <= 0.10).`,
  '',
].join('\n');
await writeFile('bench/results/model.md', markdown);
console.log(markdown);
