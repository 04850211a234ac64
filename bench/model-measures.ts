/** The model benchmark's settings and measurements (bench/model.ts writes the report). */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  GraphBuilder,
  encodeStandaloneGraph,
  TensorDataType,
  headDim,
  initWeights,
  isPresetName,
  kvBytesPerToken,
  presetConfig,
  stateBytesPerSequence,
  writeOnnxModel,
  type AttentionKind,
  type ModelConfig,
} from '#model';
import {
  float32Tensor,
  openSession,
  runChunk,
  runSession,
  type ChunkRequest,
  type InferenceSession,
} from '#engine/runtime';
import { ENGINE_DEFAULTS } from '#engine';

function listFromEnv(name: string, fallback: number[]): number[] {
  const value = process.env[name];
  return value === undefined ? fallback : value.split(',').map(Number);
}

export const contexts = listFromEnv('BENCH_CONTEXTS', [1024, 4096, 16384, 65536]);
const prefillLengths = listFromEnv('BENCH_PREFILL', [2048, 4096, 8192, 16384, 32768, 65536]);
export const softmaxPrefillMax = Number(process.env.BENCH_SOFTMAX_PREFILL_MAX ?? 16384);
const batches = listFromEnv('BENCH_BATCHES', [1, 8, 32, 64]);
export const threads = Number(process.env.BENCH_THREADS ?? 2);
export const presetName = process.env.BENCH_PRESET ?? 'pythia-70m';
if (!isPresetName(presetName)) throw new Error(`BENCH_PRESET ${presetName} is not a preset`);
/** Prefill chunk (the engine's default chunk size): bounds the [H, T, T] intra-chunk matrices. */
export const PREFILL_CHUNK = ENGINE_DEFAULTS.maxPrefillChunk;
/** Decode rounds; each round steps every context of both attention kinds once, interleaved. */
export const DECODE_ROUNDS = 20;
const BATCH_REPEATS = 8;
/** Context of the batched decode measurement (DiJiang's step does not depend on it). */
export const BATCH_CONTEXT = 4096;
export const PEAK_SIZE = 2048;
export const TARGET_FLAT_DECODE = 1.1;
export const TARGET_DECODE_SPEEDUP = 5;
export const TARGET_PREFILL_SPREAD = 0.1;
export const TARGET_PEAK_FRACTION = 0.5;

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function timed(run: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await run();
  return performance.now() - start;
}

/** fp32 MatMul peak: [n, n] x [n, n] in the same runtime and thread count; best of 7 runs. */
export async function matmulPeakGflops(dir: string, n: number): Promise<number> {
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
  await writeFile(path, encodeStandaloneGraph(g, 'matmul', 'bench'));
  const session = await openSession(path, { intraOpNumThreads: threads });
  const feeds = { a: float32Tensor(new Float32Array(n * n).fill(0.5), [n, n]) };
  await runSession(session, feeds);
  const times: number[] = [];
  for (let i = 0; i < 7; i++) times.push(await timed(() => runSession(session, feeds)));
  await session.release();
  return (2 * n ** 3) / (Math.min(...times) / 1000) / 1e9;
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
    // DiJiang: feature maps of q and k, intra-chunk scores and values, state read and update.
    const perHead =
      config.attention === 'dijiang'
        ? 2 * (2 * t * d * d + 2 * t * t * d + 2 * t * d * d)
        : 2 * (2 * t * (past + t) * d);
    attention += config.numLayers * config.numHeads * perHead;
  }
  const chunks = Math.ceil(length / chunk);
  return perTokenLinear * length + attention + chunks * 2 * h * config.vocabSize;
}

export interface Model {
  readonly config: ModelConfig;
  readonly session: InferenceSession;
}

export async function openModel(dir: string, attention: AttentionKind): Promise<Model> {
  const config = presetConfig(presetName as Parameters<typeof presetConfig>[0], attention);
  const path = join(dir, `${attention}.onnx`);
  await writeOnnxModel(config, initWeights(config, 0), path);
  return { config, session: await openSession(path, { intraOpNumThreads: threads }) };
}

/**
 * One decode step (B = 1, T = 1) at `context` tokens of history. A step's cost does not depend on
 * the values it carries, so zeros stand in for a real history: DiJiang's fixed-size state, and for
 * the baseline a synthetic zero KV cache of the full [layers, 1, H, context, d] shape (building a
 * 64k-token cache by prefill would take the baseline's quadratic prefill).
 */
function decodeRequest(model: Model, context: number): ChunkRequest {
  const { config } = model;
  const base = { inputIds: [1], batch: 1, chunk: 1, startPos: [context], validLen: [1] };
  if (config.attention === 'dijiang') return base;
  const size = config.numLayers * config.numHeads * context * headDim(config);
  return {
    ...base,
    kv: { key: new Float32Array(size), value: new Float32Array(size), length: context },
  };
}

export interface DecodeRow {
  context: number;
  stepMs: number;
  /** State (DiJiang) or KV cache (softmax) carried per sequence. */
  bytesPerSequence: number;
}

export async function benchDecode(
  models: readonly Model[],
): Promise<Map<AttentionKind, DecodeRow[]>> {
  const requests = models.map((model) => contexts.map((context) => decodeRequest(model, context)));
  const times = models.map(() => contexts.map((): number[] => []));
  for (let round = -1; round < DECODE_ROUNDS; round++) {
    for (let c = 0; c < contexts.length; c++) {
      for (let m = 0; m < models.length; m++) {
        const model = models[m];
        const request = requests[m]?.[c];
        if (model === undefined || request === undefined) continue;
        const ms = await timed(() => runChunk(model.session, model.config, request));
        // Round -1 warms up each shape.
        if (round >= 0) times[m]?.[c]?.push(ms);
      }
    }
  }
  const results = new Map<AttentionKind, DecodeRow[]>();
  models.forEach((model, m) => {
    const rows = contexts.map((context, c) => ({
      context,
      stepMs: median(times[m]?.[c] ?? []),
      bytesPerSequence:
        model.config.attention === 'dijiang'
          ? stateBytesPerSequence(model.config)
          : kvBytesPerToken(model.config) * context,
    }));
    for (const row of rows)
      console.log(
        `${model.config.attention} decode @${row.context}: ${row.stepMs.toFixed(2)} ms, ${row.bytesPerSequence} bytes/sequence`,
      );
    results.set(model.config.attention, rows);
  });
  return results;
}

interface BatchRow {
  batch: number;
  stepMs: number;
  tokensPerSecond: number;
}

export async function benchBatchedDecode(model: Model): Promise<BatchRow[]> {
  const rows: BatchRow[] = [];
  for (const batch of batches) {
    const request: ChunkRequest = {
      inputIds: Array.from({ length: batch }, (_, b) => b + 1),
      batch,
      chunk: 1,
      startPos: Array.from({ length: batch }, () => BATCH_CONTEXT),
      validLen: Array.from({ length: batch }, () => 1),
    };
    await runChunk(model.session, model.config, request);
    const times: number[] = [];
    for (let i = 0; i < BATCH_REPEATS; i++)
      times.push(await timed(() => runChunk(model.session, model.config, request)));
    const stepMs = median(times);
    rows.push({ batch, stepMs, tokensPerSecond: (batch * 1000) / stepMs });
    console.log(`dijiang decode B=${batch}: ${stepMs.toFixed(2)} ms/step`);
  }
  return rows;
}

interface PrefillRow {
  length: number;
  seconds: number;
  tokensPerSecond: number;
  /**
   * Tokens/s of the median full chunk. Every chunk of a DiJiang prefill is the same work, so this
   * is the length's own rate with other processes' interference (spikes in a few chunks) removed.
   */
  medianChunkTokensPerSecond: number;
  gflops: number;
}

export async function benchPrefill(model: Model, peak: number): Promise<PrefillRow[]> {
  const { config, session } = model;
  const rows: PrefillRow[] = [];
  for (const length of prefillLengths) {
    if (config.attention === 'softmax' && length > softmaxPrefillMax) continue;
    const ids = Array.from({ length }, (_, i) => (i * 7919) % config.vocabSize);
    let carried: Pick<ChunkRequest, 'state' | 'kv'> = {};
    const fullChunkMs: number[] = [];
    const milliseconds = await timed(async () => {
      for (let position = 0; position < length; position += PREFILL_CHUNK) {
        const size = Math.min(PREFILL_CHUNK, length - position);
        const chunkStarted = performance.now();
        const result = await runChunk(session, config, {
          inputIds: ids.slice(position, position + size),
          batch: 1,
          chunk: size,
          startPos: [position],
          validLen: [size],
          ...carried,
        });
        carried =
          config.attention === 'dijiang'
            ? result.state === undefined
              ? {}
              : { state: result.state }
            : result.kv === undefined
              ? {}
              : { kv: result.kv };
        if (size === PREFILL_CHUNK) fullChunkMs.push(performance.now() - chunkStarted);
      }
    });
    const seconds = milliseconds / 1000;
    const gflops = prefillFlops(config, length, PREFILL_CHUNK) / seconds / 1e9;
    rows.push({
      length,
      seconds,
      tokensPerSecond: length / seconds,
      medianChunkTokensPerSecond: (PREFILL_CHUNK * 1000) / median(fullChunkMs),
      gflops,
    });
    console.log(
      `${config.attention} prefill ${length}: ${(length / seconds).toFixed(0)} tok/s, ${gflops.toFixed(1)} GFLOP/s (${(gflops / peak).toFixed(2)} of peak)`,
    );
  }
  return rows;
}
