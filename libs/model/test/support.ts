/**
 * Shared helpers of the model tests: weights that make every part of the model matter, a numeric
 * comparison against the float64 oracle, and chunked runs of a session.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { headDim, initWeights, Rng, writeOnnxModel, type ModelConfig, type Weights } from '#model';
import { openSession, runChunk, type InferenceSession, type KvCache } from '#engine/runtime';

/**
 * The seeded init scaled so that attention is not negligible next to the residual (std 0.02 makes
 * q and k so small that phi is nearly uniform): Linear weights N(0, 1/in), embeddings N(0, 1),
 * random biases and norm affines, and decay tables that are not of the g^t form (random ratios in
 * [0.97, 1) and c_t in [0.5, 1.5)), as a fine-tuned checkpoint's could be.
 */
export function testWeights(config: ModelConfig, seed: number): Weights {
  const weights = initWeights(config, seed);
  const rng = new Rng(seed ^ 0x5eed);
  const maxPos = config.maxPositionEmbeddings;
  for (const [name, tensor] of weights) {
    const data = tensor.data;
    if (name.endsWith('.D1')) {
      const d2 = weights.get(name.replace(/D1$/, 'D2'));
      if (d2 === undefined) throw new Error(`no D2 next to ${name}`);
      for (let h = 0; h < config.numHeads; h++) {
        let d1 = 0.5 + rng.uniform();
        for (let t = 0; t < maxPos; t++) {
          if (t > 0) d1 *= 0.97 + 0.03 * rng.uniform();
          data[h * maxPos + t] = d1;
          d2.data[h * maxPos + t] = (0.5 + rng.uniform()) / Math.fround(d1);
        }
      }
    } else if (name.endsWith('.D2') || name.endsWith('proj_matrix')) {
      continue;
    } else if (name.endsWith('.bias')) {
      for (let i = 0; i < data.length; i++) data[i] = 0.1 * rng.normal();
    } else if (tensor.shape.length === 1) {
      for (let i = 0; i < data.length; i++) data[i] = 1 + 0.1 * rng.normal();
    } else {
      const inFeatures =
        name.endsWith('W_G') || name.endsWith('embed_in.weight')
          ? tensor.shape[0]
          : tensor.shape[1];
      const std = name.endsWith('embed_in.weight') ? 1 : 1 / Math.sqrt(inFeatures ?? 1);
      for (let i = 0; i < data.length; i++) data[i] = std * rng.normal();
    }
  }
  return weights;
}

/** Token ids in [0, vocab), seeded. */
export function randomIds(count: number, vocabSize: number, seed: number): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => rng.nextUint32() % vocabSize);
}

/** Asserts |actual - expected| <= atol + rtol |expected| everywhere, naming the worst element. */
export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  label: string,
  tolerance: { rtol: number; atol: number } = { rtol: 1e-4, atol: 1e-5 },
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${label}: ${actual.length} values, expected ${expected.length}`);
  }
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i] ?? Number.NaN;
    const e = expected[i] ?? Number.NaN;
    const excess = Math.abs(a - e) - (tolerance.atol + tolerance.rtol * Math.abs(e));
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${label}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} (rtol ${tolerance.rtol}, atol ${tolerance.atol})`,
    );
  }
}

/** Writes the model's fp32 graph to a temporary folder and opens a session on it. */
export async function openTestModel(
  config: ModelConfig,
  weights: Weights,
): Promise<{ session: InferenceSession; modelPath: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'dijiang-model-'));
  const modelPath = join(dir, 'model.onnx');
  await writeOnnxModel(config, weights, modelPath);
  return { session: await openSession(modelPath, { intraOpNumThreads: 2 }), modelPath };
}

export interface SingleRowState {
  state?: Float32Array;
  kv?: KvCache;
}

export interface ScheduleResult {
  /** Last logits of every chunk, keyed by the absolute position of the chunk's last token. */
  logitsAt: Map<number, Float32Array>;
  /** log p(ids[t + 1] | ids[..t]) for t < ids.length - 1. */
  targetLogprobs: Float32Array;
  final: SingleRowState;
}

/** Feeds `ids` to one row in chunks of the given sizes (cycled), scoring the next token at each position. */
export async function runSchedule(
  session: InferenceSession,
  config: ModelConfig,
  ids: readonly number[],
  chunkSizes: readonly number[],
): Promise<ScheduleResult> {
  const logitsAt = new Map<number, Float32Array>();
  const targetLogprobs = new Float32Array(ids.length - 1);
  let carried: SingleRowState = {};
  let position = 0;
  for (let step = 0; position < ids.length; step++) {
    const size = Math.min(chunkSizes[step % chunkSizes.length] ?? 1, ids.length - position);
    const chunkIds = ids.slice(position, position + size);
    // The target of the sequence's last token is unknown: any id, its log-prob is not kept.
    const targets = Array.from({ length: size }, (_, t) => ids[position + t + 1] ?? 0);
    const result = await runChunk(session, config, {
      inputIds: chunkIds,
      batch: 1,
      chunk: size,
      startPos: [position],
      validLen: [size],
      targetIds: targets,
      ...carried,
    });
    logitsAt.set(position + size - 1, result.logits);
    const logprobs = result.targetLogprobs ?? new Float32Array();
    for (let t = 0; t < size && position + t < targetLogprobs.length; t++)
      targetLogprobs[position + t] = logprobs[t] ?? Number.NaN;
    carried =
      config.attention === 'dijiang'
        ? { ...(result.state ? { state: result.state } : {}) }
        : { ...(result.kv ? { kv: result.kv } : {}) };
    position += size;
  }
  return { logitsAt, targetLogprobs, final: carried };
}

/** Elements of a DiJiang state [layers, B, H, d, d] for one row, as [layers, 1, H, d, d]. */
export function stateRow(
  config: ModelConfig,
  state: Float32Array,
  batch: number,
  row: number,
): Float32Array {
  const block = config.numHeads * headDim(config) ** 2;
  const out = new Float32Array(config.numLayers * block);
  for (let layer = 0; layer < config.numLayers; layer++) {
    out.set(
      state.subarray((layer * batch + row) * block, (layer * batch + row + 1) * block),
      layer * block,
    );
  }
  return out;
}
