/**
 * Writes a model's ONNX graph to disk. Initializers stay inside the .onnx file unless the weights
 * are large: a protobuf message is limited to 2 GiB, so above {@link EXTERNAL_DATA_THRESHOLD_BYTES}
 * every sizeable initializer goes to one external-data file next to the graph (ONNX's
 * `data_location = EXTERNAL`, resolved by onnxruntime relative to the graph's directory).
 */
import { open, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { stageCounter, type BuildProgress } from '../build-progress.js';
import type { ModelConfig } from '../config.js';
import type { WeightPrecision } from '../quantize.js';
import type { Weights } from '../weights.js';
import type { GraphBuilder, Initializer } from './graph-builder.js';
import { buildModelGraph, type Precision } from './model-graph.js';
import {
  CONTRIB_DOMAIN,
  encodeModel,
  encodeModelPieces,
  IR_VERSION,
  OPSET_VERSION,
  type TensorMessage,
} from './proto.js';

/** Above 1 GiB of weights, use external data (keeps the protobuf well below its 2 GiB limit). */
export const EXTERNAL_DATA_THRESHOLD_BYTES = 2 ** 30;
/** Initializers smaller than this stay inline even with external data (constants, norms). */
const INLINE_MAX_BYTES = 1024;
/** Offsets in the external-data file are aligned for memory mapping. */
const EXTERNAL_ALIGNMENT = 4096;
/** Bytes per write call: small pieces are gathered up to this, large buffers cut into it. */
const WRITE_CHUNK_BYTES = 4 * 2 ** 20;

export type ExternalDataMode = 'auto' | 'always' | 'never';

export interface WriteOnnxOptions {
  /** @defaultValue 'fp32' */
  precision?: Precision;
  /** How a float32 graph stores its large matrices (see quantize.ts). @defaultValue 'fp32' */
  weights?: WeightPrecision;
  /** @defaultValue 'auto': external data when the weights exceed {@link EXTERNAL_DATA_THRESHOLD_BYTES} */
  externalData?: ExternalDataMode;
  /**
   * Told how far building the graph (stage `graph` or `quantize`, see {@link buildModelGraph})
   * and writing its files (stage `write`, bytes of the graph and its external data) have got.
   */
  onProgress?: BuildProgress;
}

export interface WrittenOnnx {
  /** The graph file. */
  modelPath: string;
  /** The external-data file, when one was written. */
  dataPath?: string;
}

/** An initializer stored inside the .onnx file. */
const inline = (init: Initializer): TensorMessage => ({
  name: init.name,
  dims: [...init.dims],
  dataType: init.dataType,
  rawData: init.bytes,
});

/**
 * One builder's graph as a whole model with inline initializers: the single-operator graphs that
 * tests and benchmarks time or check on their own.
 */
export function encodeStandaloneGraph(g: GraphBuilder, name: string, producer: string): Uint8Array {
  return encodeModel({
    irVersion: IR_VERSION,
    producerName: producer,
    producerVersion: '0',
    docString: '',
    opsetImport: [
      { domain: '', version: OPSET_VERSION },
      ...(g.usesContribOps ? [{ domain: CONTRIB_DOMAIN, version: 1 }] : []),
    ],
    metadataProps: [],
    graph: {
      name,
      node: g.nodes,
      initializer: g.initializers.map(inline),
      input: g.inputs,
      output: g.outputs,
    },
  });
}

/** Writes `bytes` at `position`, a chunk at a time, telling `advance` of each chunk written. */
async function writeAt(
  handle: FileHandle,
  bytes: Uint8Array,
  position: number,
  advance: (bytes: number) => void,
): Promise<void> {
  for (let offset = 0; offset < bytes.byteLength;) {
    const length = Math.min(WRITE_CHUNK_BYTES, bytes.byteLength - offset);
    const { bytesWritten } = await handle.write(bytes, offset, length, position + offset);
    offset += bytesWritten;
    advance(bytesWritten);
  }
}

/** One buffer of a run of pieces; a lone piece (a large initializer's data) is not copied. */
function joined(run: readonly Uint8Array[]): Uint8Array {
  const [only] = run;
  return run.length === 1 && only !== undefined ? only : Buffer.concat(run);
}

/** The pieces in order, with runs of small ones joined so that each write call carries a chunk. */
function* joinedPieces(pieces: readonly Uint8Array[]): Generator<Uint8Array> {
  let run: Uint8Array[] = [];
  let runBytes = 0;
  for (const piece of pieces) {
    if (runBytes > 0 && runBytes + piece.byteLength > WRITE_CHUNK_BYTES) {
      yield joined(run);
      run = [];
      runBytes = 0;
    }
    run.push(piece);
    runBytes += piece.byteLength;
  }
  if (runBytes > 0) yield joined(run);
}

export async function writeOnnxModel(
  config: ModelConfig,
  weights: Weights,
  modelPath: string,
  options: WriteOnnxOptions = {},
): Promise<WrittenOnnx> {
  const precision = options.precision ?? 'fp32';
  const weightPrecision = precision === 'fp32' ? (options.weights ?? 'fp32') : precision;
  const graph = buildModelGraph(config, weights, precision, weightPrecision, options.onProgress);
  const totalBytes = graph.initializers.reduce((sum, init) => sum + init.bytes.byteLength, 0);
  const mode = options.externalData ?? 'auto';
  const external =
    mode === 'always' || (mode === 'auto' && totalBytes > EXTERNAL_DATA_THRESHOLD_BYTES);

  const dataFile = `${basename(modelPath)}.data`;
  const dataPath = join(dirname(modelPath), dataFile);
  const tensors: TensorMessage[] = [];
  const externalWrites: { bytes: Uint8Array; offset: number }[] = [];
  let offset = 0;
  for (const init of graph.initializers) {
    if (!external || init.bytes.byteLength < INLINE_MAX_BYTES) {
      tensors.push(inline(init));
      continue;
    }
    offset = Math.ceil(offset / EXTERNAL_ALIGNMENT) * EXTERNAL_ALIGNMENT;
    externalWrites.push({ bytes: init.bytes, offset });
    tensors.push({
      name: init.name,
      dims: [...init.dims],
      dataType: init.dataType,
      dataLocation: 1,
      externalData: [
        { key: 'location', value: dataFile },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(init.bytes.byteLength) },
      ],
    });
    offset += init.bytes.byteLength;
  }

  const pieces = encodeModelPieces({
    irVersion: IR_VERSION,
    producerName: 'dijiang-cluster',
    producerVersion: '0.1.0',
    docString:
      `GPT-NeoX with ${config.attention} attention, ${precision}` +
      (weightPrecision === precision ? '' : ` with ${weightPrecision} weights`),
    opsetImport: [
      { domain: '', version: OPSET_VERSION },
      ...(graph.usesContribOps ? [{ domain: CONTRIB_DOMAIN, version: 1 }] : []),
    ],
    metadataProps: [{ key: 'dijiang.config', value: JSON.stringify(config) }],
    graph: {
      name: `gpt-neox-${config.attention}`,
      node: graph.nodes,
      initializer: tensors,
      input: graph.inputs,
      output: graph.outputs,
    },
  });
  const advance = stageCounter(
    'write',
    [...pieces, ...externalWrites.map((write) => write.bytes)].reduce(
      (sum, bytes) => sum + bytes.byteLength,
      0,
    ),
    options.onProgress,
  );
  if (external) {
    const handle = await open(dataPath, 'w');
    try {
      for (const write of externalWrites) await writeAt(handle, write.bytes, write.offset, advance);
    } finally {
      await handle.close();
    }
  }
  const handle = await open(modelPath, 'w');
  try {
    let position = 0;
    for (const chunk of joinedPieces(pieces)) {
      await writeAt(handle, chunk, position, advance);
      position += chunk.byteLength;
    }
  } finally {
    await handle.close();
  }
  return external ? { modelPath, dataPath } : { modelPath };
}
