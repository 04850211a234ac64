/**
 * The subset of onnx.proto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto, IR version 9)
 * that the graph builder writes, defined through protobufjs reflection. Field numbers are ONNX's.
 */
import protobuf from 'protobufjs';

export const TensorDataType = {
  Float: 1,
  UInt8: 2,
  Int64: 7,
  Bool: 9,
  Float16: 10,
  Double: 11,
} as const;
export type TensorDataType = (typeof TensorDataType)[keyof typeof TensorDataType];

export const AttributeType = {
  Float: 1,
  Int: 2,
  String: 3,
  Tensor: 4,
  Floats: 6,
  Ints: 7,
} as const;

/** ONNX IR version 9 goes with opset 20 (ONNX 1.15), the first with the Gelu operator. */
export const IR_VERSION = 9;
export const OPSET_VERSION = 20;
/** onnxruntime's contrib operators (MatMulNBits, GatherBlockQuantized), opset 1. */
export const CONTRIB_DOMAIN = 'com.microsoft';

const schema = {
  nested: {
    onnx: {
      nested: {
        StringStringEntryProto: {
          fields: { key: { type: 'string', id: 1 }, value: { type: 'string', id: 2 } },
        },
        OperatorSetIdProto: {
          fields: { domain: { type: 'string', id: 1 }, version: { type: 'int64', id: 2 } },
        },
        TensorProto: {
          fields: {
            dims: { rule: 'repeated', type: 'int64', id: 1 },
            dataType: { type: 'int32', id: 2 },
            name: { type: 'string', id: 8 },
            rawData: { type: 'bytes', id: 9 },
            externalData: { rule: 'repeated', type: 'StringStringEntryProto', id: 13 },
            dataLocation: { type: 'int32', id: 14 },
          },
        },
        AttributeProto: {
          fields: {
            name: { type: 'string', id: 1 },
            f: { type: 'float', id: 2 },
            i: { type: 'int64', id: 3 },
            s: { type: 'bytes', id: 4 },
            t: { type: 'TensorProto', id: 5 },
            floats: { rule: 'repeated', type: 'float', id: 7 },
            ints: { rule: 'repeated', type: 'int64', id: 8 },
            type: { type: 'int32', id: 20 },
          },
        },
        NodeProto: {
          fields: {
            input: { rule: 'repeated', type: 'string', id: 1 },
            output: { rule: 'repeated', type: 'string', id: 2 },
            name: { type: 'string', id: 3 },
            opType: { type: 'string', id: 4 },
            attribute: { rule: 'repeated', type: 'AttributeProto', id: 5 },
            domain: { type: 'string', id: 7 },
          },
        },
        TensorShapeProto: {
          fields: { dim: { rule: 'repeated', type: 'Dimension', id: 1 } },
          nested: {
            Dimension: {
              oneofs: { value: { oneof: ['dimValue', 'dimParam'] } },
              fields: {
                dimValue: { type: 'int64', id: 1 },
                dimParam: { type: 'string', id: 2 },
              },
            },
          },
        },
        TypeProto: {
          oneofs: { value: { oneof: ['tensorType'] } },
          fields: { tensorType: { type: 'Tensor', id: 1 } },
          nested: {
            Tensor: {
              fields: {
                elemType: { type: 'int32', id: 1 },
                shape: { type: 'TensorShapeProto', id: 2 },
              },
            },
          },
        },
        ValueInfoProto: {
          fields: { name: { type: 'string', id: 1 }, type: { type: 'TypeProto', id: 2 } },
        },
        GraphProto: {
          fields: {
            node: { rule: 'repeated', type: 'NodeProto', id: 1 },
            name: { type: 'string', id: 2 },
            initializer: { rule: 'repeated', type: 'TensorProto', id: 5 },
            docString: { type: 'string', id: 10 },
            input: { rule: 'repeated', type: 'ValueInfoProto', id: 11 },
            output: { rule: 'repeated', type: 'ValueInfoProto', id: 12 },
          },
        },
        ModelProto: {
          fields: {
            irVersion: { type: 'int64', id: 1 },
            producerName: { type: 'string', id: 2 },
            producerVersion: { type: 'string', id: 3 },
            docString: { type: 'string', id: 6 },
            graph: { type: 'GraphProto', id: 7 },
            opsetImport: { rule: 'repeated', type: 'OperatorSetIdProto', id: 8 },
            metadataProps: { rule: 'repeated', type: 'StringStringEntryProto', id: 14 },
          },
        },
      },
    },
  },
};

const root = protobuf.Root.fromJSON(schema);
const modelProtoType = root.lookupType('onnx.ModelProto');
const graphProtoType = root.lookupType('onnx.GraphProto');
const tensorProtoType = root.lookupType('onnx.TensorProto');

/** The fields {@link encodeModelPieces} writes itself: ModelProto.graph, GraphProto.initializer, TensorProto.raw_data. */
const MODEL_GRAPH_FIELD = 7;
const GRAPH_INITIALIZER_FIELD = 5;
const TENSOR_RAW_DATA_FIELD = 9;

/** Plain-object forms of the messages (protobufjs camelCase field names). */
export interface TensorMessage {
  name: string;
  dims: number[];
  dataType: TensorDataType;
  rawData?: Uint8Array;
  externalData?: { key: string; value: string }[];
  dataLocation?: number;
}

export interface AttributeMessage {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: TensorMessage;
  floats?: number[];
  ints?: number[];
}

export interface NodeMessage {
  name: string;
  opType: string;
  input: string[];
  output: string[];
  attribute: AttributeMessage[];
  /** The operator's domain; absent: the default ONNX domain. */
  domain?: string;
}

/** A dimension is a number (fixed) or a string (symbolic). */
export type Dim = number | string;

export interface ValueInfoMessage {
  name: string;
  type: {
    tensorType: {
      elemType: number;
      shape: { dim: ({ dimValue: number } | { dimParam: string })[] };
    };
  };
}

export interface ModelMessage {
  irVersion: number;
  producerName: string;
  producerVersion: string;
  docString: string;
  opsetImport: { domain: string; version: number }[];
  metadataProps: { key: string; value: string }[];
  graph: {
    name: string;
    node: NodeMessage[];
    initializer: TensorMessage[];
    input: ValueInfoMessage[];
    output: ValueInfoMessage[];
  };
}

export function valueInfo(
  name: string,
  elemType: TensorDataType,
  dims: readonly Dim[],
): ValueInfoMessage {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: {
          dim: dims.map((dim) => (typeof dim === 'number' ? { dimValue: dim } : { dimParam: dim })),
        },
      },
    },
  };
}

export function encodeModel(model: ModelMessage): Uint8Array {
  const message = modelProtoType.fromObject(model);
  return modelProtoType.encode(message).finish();
}

/** The key and length that open a length-delimited field (wire type 2). */
function fieldHeader(field: number, length: number): Uint8Array {
  return protobuf.Writer.create()
    .uint32((field << 3) | 2)
    .uint32(length)
    .finish();
}

function totalBytes(pieces: readonly Uint8Array[]): number {
  return pieces.reduce((sum, piece) => sum + piece.byteLength, 0);
}

/**
 * The model serialized as pieces whose concatenation is a ModelProto: the message of
 * {@link encodeModel} (fields in another order, which protobuf allows) without copying any
 * initializer's raw data, each of which is a piece of its own, the caller's buffer. protobufjs
 * copies every byte into one buffer (about 0.9 s per 100 MiB here); pieces let a writer stream a
 * large graph to disk and report how far it got.
 */
export function encodeModelPieces(model: ModelMessage): Uint8Array[] {
  const { graph, ...modelFields } = model;
  const { initializer, ...graphFields } = graph;
  const graphPieces = [graphProtoType.encode(graphProtoType.fromObject(graphFields)).finish()];
  for (const { rawData, ...tensorFields } of initializer) {
    const tensorPieces = [
      tensorProtoType.encode(tensorProtoType.fromObject(tensorFields)).finish(),
      ...(rawData === undefined
        ? []
        : [fieldHeader(TENSOR_RAW_DATA_FIELD, rawData.byteLength), rawData]),
    ];
    graphPieces.push(
      fieldHeader(GRAPH_INITIALIZER_FIELD, totalBytes(tensorPieces)),
      ...tensorPieces,
    );
  }
  return [
    modelProtoType.encode(modelProtoType.fromObject(modelFields)).finish(),
    fieldHeader(MODEL_GRAPH_FIELD, totalBytes(graphPieces)),
    ...graphPieces,
  ];
}

/** Decodes a serialized ModelProto back to a plain object (used to inspect written graphs). */
export function decodeModel(bytes: Uint8Array): ModelMessage {
  const message = modelProtoType.decode(bytes);
  return modelProtoType.toObject(message, {
    longs: Number,
    defaults: true,
    arrays: true,
  }) as ModelMessage;
}
