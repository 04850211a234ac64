/**
 * Writes a model's ONNX graph to disk. Initializers stay inside the .onnx file unless the weights
 * are large: a protobuf message is limited to 2 GiB, so above {@link EXTERNAL_DATA_THRESHOLD_BYTES}
 * every sizeable initializer goes to one external-data file next to the graph (ONNX's
 * `data_location = EXTERNAL`, resolved by onnxruntime relative to the graph's directory).
 */
import { open, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { ModelConfig } from '../config.js';
import type { WeightPrecision } from '../quantize.js';
import type { Weights } from '../weights.js';
import type { GraphBuilder, Initializer } from './graph-builder.js';
import { buildModelGraph, type Precision } from './model-graph.js';
import {
  CONTRIB_DOMAIN,
  encodeModel,
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

export type ExternalDataMode = 'auto' | 'always' | 'never';

export interface WriteOnnxOptions {
  /** @defaultValue 'fp32' */
  precision?: Precision;
  /** How a float32 graph stores its large matrices (see quantize.ts). @defaultValue 'fp32' */
  weights?: WeightPrecision;
  /** @defaultValue 'auto': external data when the weights exceed {@link EXTERNAL_DATA_THRESHOLD_BYTES} */
  externalData?: ExternalDataMode;
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

export async function writeOnnxModel(
  config: ModelConfig,
  weights: Weights,
  modelPath: string,
  options: WriteOnnxOptions = {},
): Promise<WrittenOnnx> {
  const precision = options.precision ?? 'fp32';
  const weightPrecision = precision === 'fp32' ? (options.weights ?? 'fp32') : precision;
  const graph = buildModelGraph(config, weights, precision, weightPrecision);
  const totalBytes = graph.initializers.reduce((sum, init) => sum + init.bytes.byteLength, 0);
  const mode = options.externalData ?? 'auto';
  const external =
    mode === 'always' || (mode === 'auto' && totalBytes > EXTERNAL_DATA_THRESHOLD_BYTES);

  const dataFile = `${basename(modelPath)}.data`;
  const dataPath = join(dirname(modelPath), dataFile);
  let tensors: TensorMessage[];
  if (external) {
    tensors = [];
    const handle = await open(dataPath, 'w');
    try {
      let offset = 0;
      for (const init of graph.initializers) {
        if (init.bytes.byteLength < INLINE_MAX_BYTES) {
          tensors.push(inline(init));
          continue;
        }
        offset = Math.ceil(offset / EXTERNAL_ALIGNMENT) * EXTERNAL_ALIGNMENT;
        await handle.write(init.bytes, 0, init.bytes.byteLength, offset);
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
    } finally {
      await handle.close();
    }
  } else {
    tensors = graph.initializers.map(inline);
  }

  const bytes = encodeModel({
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
  await writeFile(modelPath, bytes);
  return external ? { modelPath, dataPath } : { modelPath };
}
