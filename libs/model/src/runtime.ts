/**
 * Running a model graph with onnxruntime-node: opening a session and running one chunk for a batch.
 * `session.run()` is synchronous native work that blocks the calling thread for its duration: the
 * engine calls this from its own worker thread, never from a main thread serving I/O.
 */
import ort from 'onnxruntime-node';
import { headDim, type ModelConfig } from './config.js';
import type { LoadedBundle } from './bundle.js';
import { GraphInput, GraphOutput, type Precision } from './onnx/model-graph.js';

/**
 * Execution providers this project runs on. CUDA needs onnxruntime-node's CUDA libraries
 * (installed with ONNXRUNTIME_NODE_INSTALL=cuda12) and an NVIDIA driver; only CPU runs on
 * machines without them.
 */
export const EXECUTION_PROVIDERS = ['cpu', 'cuda'] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

export interface SessionOptions {
  /** @defaultValue 'cpu' */
  executionProvider?: ExecutionProvider;
  /** @defaultValue onnxruntime's choice (one thread per physical core) */
  intraOpNumThreads?: number;
  /**
   * Let idle intra-op threads spin waiting for work. Off by default: spinning threads keep every
   * core busy between runs, which starves the process's other threads (the event loop, streaming)
   * and any other process on small machines, and measured no faster here.
   * @defaultValue false
   */
  allowSpinning?: boolean;
}

export async function openSession(
  modelPath: string,
  options: SessionOptions = {},
): Promise<ort.InferenceSession> {
  const provider = options.executionProvider ?? 'cpu';
  if (!(EXECUTION_PROVIDERS as readonly string[]).includes(provider)) {
    throw new Error(
      `unsupported execution provider '${provider}': valid ones are ${EXECUTION_PROVIDERS.join(', ')}`,
    );
  }
  return ort.InferenceSession.create(modelPath, {
    executionProviders: [provider],
    graphOptimizationLevel: 'all',
    extra: { session: { 'intra_op.allow_spinning': options.allowSpinning === true ? '1' : '0' } },
    ...(options.intraOpNumThreads === undefined
      ? {}
      : { intraOpNumThreads: options.intraOpNumThreads }),
  });
}

/** The KV cache of the softmax baseline: [layers, B, H, length, d] each, by absolute position. */
export interface KvCache {
  readonly key: Float32Array;
  readonly value: Float32Array;
  readonly length: number;
}

export interface ChunkRequest {
  /** Token ids [batch, chunk] row-major; padding (after valid_len) may hold any valid id. */
  readonly inputIds: ArrayLike<number>;
  readonly batch: number;
  readonly chunk: number;
  /** Absolute position of each row's first token. */
  readonly startPos: ArrayLike<number>;
  /** Number of real tokens in each row (the rest is right padding). */
  readonly validLen: ArrayLike<number>;
  /** DiJiang state [layers, B, H, d, d]. @defaultValue zeros (every row at position 0) */
  readonly state?: Float32Array;
  /** Softmax KV cache. @defaultValue empty */
  readonly kv?: KvCache;
  /** Target ids [batch, chunk] whose log-probs are returned. @defaultValue none (no scoring) */
  readonly targetIds?: ArrayLike<number>;
}

export interface ChunkResult {
  /** [batch, vocab] at each row's last valid position. */
  readonly logits: Float32Array;
  /** [batch] log sum exp of each row of `logits` (the log-softmax normaliser). */
  readonly logitsLogNormaliser: Float32Array;
  /** [batch, chunk] log-probs of the targets, when targets were given. */
  readonly targetLogprobs?: Float32Array;
  /** DiJiang state after the chunk. */
  readonly state?: Float32Array;
  /** Softmax KV cache after the chunk, trimmed to the longest row. */
  readonly kv?: KvCache;
}

function int64Tensor(values: ArrayLike<number>, dims: number[]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(Array.from(values), BigInt), dims);
}

function checkLength(name: string, values: ArrayLike<number>, expected: number): void {
  if (values.length !== expected) {
    throw new Error(`${name} has ${values.length} values, expected ${expected}`);
  }
}

/** Runs one chunk; inputs are checked against the config so that mistakes name the bad input. */
export async function runChunk(
  session: ort.InferenceSession,
  config: ModelConfig,
  request: ChunkRequest,
): Promise<ChunkResult> {
  const { batch, chunk } = request;
  const heads = config.numHeads;
  const d = headDim(config);
  checkLength(GraphInput.InputIds, request.inputIds, batch * chunk);
  checkLength(GraphInput.StartPos, request.startPos, batch);
  checkLength(GraphInput.ValidLen, request.validLen, batch);
  for (let b = 0; b < batch; b++) {
    const valid = request.validLen[b] ?? 0;
    if (valid < 0 || valid > chunk)
      throw new Error(`valid_len[${b}] = ${valid} is outside [0, ${chunk}]`);
  }
  const feeds: Record<string, ort.Tensor> = {
    [GraphInput.InputIds]: int64Tensor(request.inputIds, [batch, chunk]),
    [GraphInput.StartPos]: int64Tensor(request.startPos, [batch]),
    [GraphInput.ValidLen]: int64Tensor(request.validLen, [batch]),
    [GraphInput.TargetIds]:
      request.targetIds === undefined
        ? int64Tensor([], [batch, 0])
        : (checkLength(GraphInput.TargetIds, request.targetIds, batch * chunk),
          int64Tensor(request.targetIds, [batch, chunk])),
  };
  let pastLength = 0;
  if (config.attention === 'dijiang') {
    const stateSize = config.numLayers * batch * heads * d * d;
    const state = request.state ?? new Float32Array(stateSize);
    checkLength(GraphInput.State, state, stateSize);
    feeds[GraphInput.State] = new ort.Tensor('float32', state, [
      config.numLayers,
      batch,
      heads,
      d,
      d,
    ]);
  } else {
    pastLength = request.kv?.length ?? 0;
    const kvSize = config.numLayers * batch * heads * pastLength * d;
    const key = request.kv?.key ?? new Float32Array(0);
    const value = request.kv?.value ?? new Float32Array(0);
    checkLength(GraphInput.PastKey, key, kvSize);
    checkLength(GraphInput.PastValue, value, kvSize);
    const dims = [config.numLayers, batch, heads, pastLength, d];
    feeds[GraphInput.PastKey] = new ort.Tensor('float32', key, dims);
    feeds[GraphInput.PastValue] = new ort.Tensor('float32', value, dims);
  }

  let outputs: ort.InferenceSession.OnnxValueMapType;
  try {
    outputs = await session.run(feeds);
  } catch (error) {
    // Name every input's type and shape: the usual cause is a feed that does not fit the graph.
    const described = Object.entries(feeds)
      .map(([name, tensor]) => `${name} ${tensor.type} [${tensor.dims.join(', ')}]`)
      .join('; ');
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`onnxruntime run failed: ${reason} (inputs: ${described})`, { cause: error });
  }
  const output = (name: string): Float32Array => {
    const tensor = outputs[name];
    if (tensor === undefined || !(tensor.data instanceof Float32Array)) {
      throw new Error(`the model returned no float32 output ${name}`);
    }
    return tensor.data;
  };
  const logits = output(GraphOutput.Logits);
  const logitsLogNormaliser = output(GraphOutput.LogitsLogNormaliser);
  const scoring =
    request.targetIds === undefined ? {} : { targetLogprobs: output(GraphOutput.TargetLogprobs) };
  if (config.attention === 'dijiang') {
    return { logits, logitsLogNormaliser, ...scoring, state: output(GraphOutput.State) };
  }
  let longest = 0;
  for (let b = 0; b < batch; b++)
    longest = Math.max(longest, (request.startPos[b] ?? 0) + (request.validLen[b] ?? 0));
  const present = pastLength + chunk;
  const trim = (values: Float32Array): Float32Array => {
    if (longest === present) return values;
    const trimmed = new Float32Array(config.numLayers * batch * heads * longest * d);
    for (let block = 0; block < config.numLayers * batch * heads; block++) {
      trimmed.set(
        values.subarray(block * present * d, block * present * d + longest * d),
        block * longest * d,
      );
    }
    return trimmed;
  };
  return {
    logits,
    logitsLogNormaliser,
    ...scoring,
    kv: {
      key: trim(output(GraphOutput.PresentKey)),
      value: trim(output(GraphOutput.PresentValue)),
      length: longest,
    },
  };
}

/** Opens the bundle's graph for `precision` (default fp32; fp16 is meant for CUDA workers). */
export async function openBundleSession(
  bundle: LoadedBundle,
  options: SessionOptions & { precision?: Precision } = {},
): Promise<ort.InferenceSession> {
  const { precision = 'fp32', ...sessionOptions } = options;
  return openSession(bundle.graphPath(precision), sessionOptions);
}
