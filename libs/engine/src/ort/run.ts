/**
 * Running a session: the one place `session.run()` is called, and one chunk of the model for a
 * batch. `session.run()` is synchronous native work that blocks the calling thread for its
 * duration: the engine calls this from its own worker thread, never from a main thread serving I/O.
 */
import ort from 'onnxruntime-node';
import { GraphInput, GraphOutput, headDim, type ModelConfig } from '#model';
import type { ChunkRequest, ChunkResult } from './chunk.js';
import type { InferenceSession } from './session.js';

export type SessionFeeds = Record<string, ort.Tensor>;
export type SessionOutputs = ort.InferenceSession.OnnxValueMapType;

/**
 * Runs the session; a failure is rethrown naming every input's type and shape, since the usual
 * cause is a feed that does not fit the graph.
 */
export async function runSession(
  session: InferenceSession,
  feeds: SessionFeeds,
): Promise<SessionOutputs> {
  try {
    return await session.run(feeds);
  } catch (error) {
    const described = Object.entries(feeds)
      .map(([name, tensor]) => `${name} ${tensor.type} [${tensor.dims.join(', ')}]`)
      .join('; ');
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`onnxruntime run failed: ${reason} (inputs: ${described})`, { cause: error });
  }
}

export function float32Tensor(values: Float32Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float32', values, dims);
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
  session: InferenceSession,
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
  const feeds: SessionFeeds = {
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
    feeds[GraphInput.State] = float32Tensor(state, [config.numLayers, batch, heads, d, d]);
  } else {
    pastLength = request.kv?.length ?? 0;
    const kvSize = config.numLayers * batch * heads * pastLength * d;
    const key = request.kv?.key ?? new Float32Array(0);
    const value = request.kv?.value ?? new Float32Array(0);
    checkLength(GraphInput.PastKey, key, kvSize);
    checkLength(GraphInput.PastValue, value, kvSize);
    const dims = [config.numLayers, batch, heads, pastLength, d];
    feeds[GraphInput.PastKey] = float32Tensor(key, dims);
    feeds[GraphInput.PastValue] = float32Tensor(value, dims);
  }

  const outputs = await runSession(session, feeds);
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
