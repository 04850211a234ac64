import {
  AttributeType,
  CONTRIB_DOMAIN,
  TensorDataType,
  valueInfo,
  type AttributeMessage,
  type Dim,
  type NodeMessage,
  type ValueInfoMessage,
} from './proto.js';

/** An attribute value: integers and integer lists by default, floats marked with {@link float}. */
export type AttributeValue = number | readonly number[] | { readonly float: number };

export function float(value: number): { readonly float: number } {
  return { float: value };
}

/** An initializer's bytes, kept apart from the graph so they can go to an external-data file. */
export interface Initializer {
  readonly name: string;
  readonly dataType: TensorDataType;
  readonly dims: readonly number[];
  readonly bytes: Uint8Array;
}

function attribute(name: string, value: AttributeValue): AttributeMessage {
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new Error(`attribute ${name}: ${value} is not an integer`);
    return { name, type: AttributeType.Int, i: value };
  }
  if ('float' in value) return { name, type: AttributeType.Float, f: value.float };
  return { name, type: AttributeType.Ints, ints: [...value] };
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** IEEE half-precision bits of each value (round to nearest even, overflow to infinity). */
export function toFloat16Bits(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < values.length; i++) {
    f32[0] = values[i] ?? 0;
    const bits = u32[0] ?? 0;
    const sign = (bits >>> 16) & 0x8000;
    const exponent = (bits >>> 23) & 0xff;
    const mantissa = bits & 0x7fffff;
    if (exponent === 0xff) {
      out[i] = sign | 0x7c00 | (mantissa === 0 ? 0 : 0x200);
      continue;
    }
    const halfExponent = exponent - 127 + 15;
    if (halfExponent >= 0x1f) {
      out[i] = sign | 0x7c00;
    } else if (halfExponent <= 0) {
      if (halfExponent < -10) {
        out[i] = sign;
        continue;
      }
      const full = mantissa | 0x800000;
      const shift = 14 - halfExponent;
      let half = full >>> shift;
      const remainder = full & ((1 << shift) - 1);
      const halfway = 1 << (shift - 1);
      if (remainder > halfway || (remainder === halfway && (half & 1) === 1)) half++;
      out[i] = sign | half;
    } else {
      let half = (halfExponent << 10) | (mantissa >>> 13);
      const remainder = mantissa & 0x1fff;
      if (remainder > 0x1000 || (remainder === 0x1000 && (half & 1) === 1)) half++;
      out[i] = sign | half;
    }
  }
  return out;
}

/** Builds an ONNX graph node by node; every value gets a fresh unique name unless one is given. */
export class GraphBuilder {
  readonly nodes: NodeMessage[] = [];
  readonly initializers: Initializer[] = [];
  readonly inputs: ValueInfoMessage[] = [];
  readonly outputs: ValueInfoMessage[] = [];
  private counter = 0;
  private readonly constants = new Map<string, string>();
  /** Whether a node uses onnxruntime's contrib domain (the model then imports that opset). */
  usesContribOps = false;

  private fresh(hint: string): string {
    this.counter++;
    return `${hint}_${this.counter}`;
  }

  input(name: string, dataType: TensorDataType, dims: readonly Dim[]): string {
    this.inputs.push(valueInfo(name, dataType, dims));
    return name;
  }

  /** Declares a graph output, renaming `value` to `name` through an Identity node. */
  output(name: string, value: string, dataType: TensorDataType, dims: readonly Dim[]): void {
    this.nodes.push({
      name: `${name}_out`,
      opType: 'Identity',
      input: [value],
      output: [name],
      attribute: [],
    });
    this.outputs.push(valueInfo(name, dataType, dims));
  }

  /** Adds a node with `outputCount` outputs and returns their names. */
  ops(
    opType: string,
    inputs: readonly string[],
    attributes: Readonly<Record<string, AttributeValue>> = {},
    outputCount = 1,
  ): string[] {
    const name = this.fresh(opType);
    const output = Array.from({ length: outputCount }, (_, i) => `${name}:${i}`);
    this.nodes.push({
      name,
      opType,
      input: [...inputs],
      output,
      attribute: Object.entries(attributes).map(([key, value]) => attribute(key, value)),
    });
    return output;
  }

  /** Adds a single-output node of onnxruntime's contrib domain and returns the output's name. */
  contribOp(
    opType: string,
    inputs: readonly string[],
    attributes: Readonly<Record<string, AttributeValue>>,
  ): string {
    const output = this.op(opType, inputs, attributes);
    const node = this.nodes.at(-1);
    if (node === undefined) throw new Error(`node ${opType} was not added`);
    node.domain = CONTRIB_DOMAIN;
    this.usesContribOps = true;
    return output;
  }

  /** Adds a single-output node and returns the output's name. */
  op(
    opType: string,
    inputs: readonly string[],
    attributes: Readonly<Record<string, AttributeValue>> = {},
  ): string {
    const [output] = this.ops(opType, inputs, attributes, 1);
    if (output === undefined) throw new Error(`node ${opType} has no output`);
    return output;
  }

  initializer(
    name: string,
    dataType: TensorDataType,
    dims: readonly number[],
    data: ArrayBufferView,
  ): string {
    this.initializers.push({ name, dataType, dims, bytes: bytesOf(data) });
    return name;
  }

  /** A float tensor initializer stored as float32 or float16. */
  floatInitializer(
    name: string,
    dims: readonly number[],
    values: Float32Array,
    dataType: typeof TensorDataType.Float | typeof TensorDataType.Float16,
  ): string {
    const data = dataType === TensorDataType.Float ? values : toFloat16Bits(values);
    return this.initializer(name, dataType, dims, data);
  }

  private constant(key: string, make: () => string): string {
    const existing = this.constants.get(key);
    if (existing !== undefined) return existing;
    const created = make();
    this.constants.set(key, created);
    return created;
  }

  /** An int64 constant; a scalar when `dims` is []. @defaultValue dims [values.length] */
  int64(values: readonly number[], dims: readonly number[] = [values.length]): string {
    return this.constant(`i64:${dims.join('x')}:${values.join(',')}`, () =>
      this.initializer(
        this.fresh('const_i64'),
        TensorDataType.Int64,
        dims,
        BigInt64Array.from(values, BigInt),
      ),
    );
  }

  /** A scalar constant of a floating type (float, float16 or double). */
  scalar(value: number, dataType: TensorDataType): string {
    return this.constant(`scalar:${dataType}:${value}`, () => {
      const name = this.fresh('const');
      switch (dataType) {
        case TensorDataType.Float:
          return this.initializer(name, dataType, [], Float32Array.of(value));
        case TensorDataType.Float16:
          return this.initializer(name, dataType, [], toFloat16Bits([value]));
        case TensorDataType.Double:
          return this.initializer(name, dataType, [], Float64Array.of(value));
        case TensorDataType.UInt8:
        case TensorDataType.Int64:
        case TensorDataType.Bool:
          throw new Error(`scalar(): use int64() for integer constants, got data type ${dataType}`);
      }
    });
  }
}
