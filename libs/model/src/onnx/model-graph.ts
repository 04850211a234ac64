/**
 * The ONNX graph of a model: one chunk of T positions for a batch of B rows (T = 1 is a decode
 * step). DiJiang layers use the chunked form of DIJIANG.md §3: the masked intra-chunk matrix plus
 * the carried state, with log r_t and c_t gathered by absolute position (positions past the tables
 * clamp to the last entry: the extension of §4). The softmax baseline keeps K and V per absolute
 * position. Large matmuls run on all B*T rows at once.
 *
 * Inputs: `input_ids` int64 [B, T] (right padded), `start_pos` int64 [B] (the absolute position of
 * each row's first token; for softmax also its number of cached positions), `valid_len` int64 [B],
 * `target_ids` int64 [B, S] with S = T to score targets or S = 0 to skip scoring, and the state:
 * `state` float32 [layers, B, H, d, d] (DiJiang) or `past_key` / `past_value` float32
 * [layers, B, H, P, d] (softmax; row b's entries at positions >= start_pos[b] are ignored).
 * Outputs: `logits` float32 [B, V] at each row's last valid position, `target_logprobs` float32
 * [B, S] (log-prob of target_ids[b, t] after the tokens up to t; meaningful for t < valid_len[b]),
 * and `state_out` or `present_key` / `present_value` [layers, B, H, P + T, d].
 * Padding never enters a state: padded positions get log r = 0 and c = 0 (DiJiang) and are
 * never attended to (softmax).
 */
import { headDim, rotaryDims, type ModelConfig } from '../config.js';
import { decayTables } from '../decay.js';
import { getTensor, layerPrefix, type Weights } from '../weights.js';
import { float, GraphBuilder } from './graph-builder.js';
import { TensorDataType } from './proto.js';

export type Precision = 'fp32' | 'fp16';

export const GraphInput = {
  InputIds: 'input_ids',
  StartPos: 'start_pos',
  ValidLen: 'valid_len',
  TargetIds: 'target_ids',
  State: 'state',
  PastKey: 'past_key',
  PastValue: 'past_value',
} as const;

export const GraphOutput = {
  Logits: 'logits',
  /** log sum exp of each row's logits [B]: the log-softmax normaliser, so callers never sum 50k exps. */
  LogitsLogNormaliser: 'logits_log_normaliser',
  TargetLogprobs: 'target_logprobs',
  State: 'state_out',
  PresentKey: 'present_key',
  PresentValue: 'present_value',
} as const;

// Slice end meaning "to the end of the axis".
const TO_END = Number.MAX_SAFE_INTEGER;

/** A Linear layer's weight [rows, in] and bias [rows], as the fused Gemms take them. */
interface LinearWeights {
  readonly weight: Float32Array;
  readonly bias: Float32Array;
  readonly rows: number;
}

/** Stacks Linear layers that read the same input into one [sum of rows, in] Gemm. */
function stackRows(parts: readonly LinearWeights[], inFeatures: number): LinearWeights {
  const rows = parts.reduce((sum, part) => sum + part.rows, 0);
  const weight = new Float32Array(rows * inFeatures);
  const bias = new Float32Array(rows);
  let row = 0;
  for (const part of parts) {
    weight.set(part.weight, row * inFeatures);
    bias.set(part.bias, row);
    row += part.rows;
  }
  return { weight, bias, rows };
}

/**
 * Folds a LayerNorm's affine into the Linear layer that reads it, in float64:
 * `(n * w + b) W^T + c = n (W diag(w))^T + (W b + c)`. All Linear layers of a block then share
 * one unit-affine normalisation and one Gemm.
 */
function foldNormAffine(
  linear: LinearWeights,
  normWeight: Float32Array,
  normBias: Float32Array,
): LinearWeights {
  const inFeatures = normWeight.length;
  const weight = new Float32Array(linear.weight.length);
  const bias = new Float32Array(linear.rows);
  for (let row = 0; row < linear.rows; row++) {
    let shift = linear.bias[row] ?? 0;
    for (let k = 0; k < inFeatures; k++) {
      const value = linear.weight[row * inFeatures + k] ?? 0;
      weight[row * inFeatures + k] = value * (normWeight[k] ?? 0);
      shift += value * (normBias[k] ?? 0);
    }
    bias[row] = shift;
  }
  return { weight, bias, rows: linear.rows };
}

/**
 * `[M; rotate_half as a matrix times M]` ([2d, d]): with x scaled by cos and by sin side by side,
 * `[x cos, x sin] @ this = rope(x) @ M`. rotate_half(x)_j is -x_{j+r/2} for j < r/2 and
 * x_{j-r/2} for r/2 <= j < r, so row i of the lower half is +M[i + r/2] (i < r/2), -M[i - r/2]
 * (r/2 <= i < r) or 0; the sign flips and row moves are exact.
 */
function ropeThen(matrix: Float32Array, d: number, rotary: number): Float32Array {
  const out = new Float32Array(2 * d * d);
  out.set(matrix);
  const half = rotary / 2;
  for (let i = 0; i < rotary; i++) {
    const source = i < half ? i + half : i - half;
    const sign = i < half ? 1 : -1;
    for (let j = 0; j < d; j++) out[(d + i) * d + j] = sign * (matrix[source * d + j] ?? 0);
  }
  return out;
}

/**
 * Graph layout (chosen for CPU speed; the computed function is DIJIANG.md's):
 * - One unit-affine LayerNorm per block; both norms' affines are folded into a single input Gemm
 *   that yields [q | k | v | (DiJiang: gate) | MLP up] for all heads (q and k head-major so that
 *   both go through RoPE and the feature map as one [B*T, 2H, d] tensor).
 * - RoPE and the feature projection are one MatMul: `[x cos, x sin] @ [P; rotate_half P]`
 *   (softmax: `[I; rotate_half]`), with cos = 1 and sin = 0 past the rotary dims.
 * - The attention output and the MLP output share one output Gemm over [gated | gelu].
 * - DiJiang's decay factors for all layers come from one table lookup and one float64 CumSum per
 *   graph; each layer picks its slice with a Gather. Only the [T, T] intra-chunk decay is formed
 *   per layer (from float64 differences A_t - A_s), so a decode step (T = 1) does no per-head work
 *   beyond a few [d, d] products.
 */
export function buildModelGraph(
  config: ModelConfig,
  weights: Weights,
  precision: Precision = 'fp32',
): GraphBuilder {
  const g = new GraphBuilder();
  const computeType = precision === 'fp32' ? TensorDataType.Float : TensorDataType.Float16;
  const hidden = config.hiddenSize;
  const heads = config.numHeads;
  const d = headDim(config);
  const rotary = rotaryDims(config);
  const layers = config.numLayers;
  const ffn = config.intermediateSize;
  const eps = float(config.layerNormEps);
  const tensor = (name: string, shape: readonly number[]): Float32Array =>
    getTensor(weights, name, shape).data;
  const param = (name: string, shape: readonly number[]): string =>
    g.floatInitializer(name, shape, tensor(name, shape), computeType);
  const constant = (name: string, shape: readonly number[], values: Float32Array): string =>
    g.floatInitializer(name, shape, values, computeType);
  const toCompute = (value: string): string =>
    precision === 'fp32' ? value : g.op('Cast', [value], { to: computeType });
  const toFloat32 = (value: string): string =>
    precision === 'fp32' ? value : g.op('Cast', [value], { to: TensorDataType.Float });
  const fromDouble = (value: string): string => g.op('Cast', [value], { to: computeType });
  const unsqueeze = (value: string, axes: number[]): string =>
    g.op('Unsqueeze', [value, g.int64(axes)]);
  const transpose = (value: string, perm: number[]): string => g.op('Transpose', [value], { perm });
  const slice = (value: string, start: number, end: number, axis: number): string =>
    g.op('Slice', [value, g.int64([start]), g.int64([end]), g.int64([axis])]);
  const reshape = (value: string, shape: string): string => g.op('Reshape', [value, shape]);
  const split = (value: string, sizes: number[], axis: number): string[] => {
    const parts = g.ops('Split', [value, g.int64(sizes)], { axis }, sizes.length);
    if (parts.length !== sizes.length) throw new Error('Split lost an output');
    return parts;
  };
  const pick = (values: readonly string[], index: number): string => {
    const value = values[index];
    if (value === undefined) throw new Error(`no value ${index} among ${values.length}`);
    return value;
  };
  const linearWeights = (prefix: string, rows: number, inFeatures: number): LinearWeights => ({
    weight: tensor(`${prefix}.weight`, [rows, inFeatures]),
    bias: tensor(`${prefix}.bias`, [rows]),
    rows,
  });
  const unitScale = constant('norm.unit_scale', [hidden], new Float32Array(hidden).fill(1));
  const zeroBias = constant('norm.zero_bias', [hidden], new Float32Array(hidden));
  const normalize = (x: string): string =>
    g.op('LayerNormalization', [x, unitScale, zeroBias], { axis: -1, epsilon: eps });
  const layerNorm = (x: string, prefix: string): string =>
    g.op(
      'LayerNormalization',
      [x, param(`${prefix}.weight`, [hidden]), param(`${prefix}.bias`, [hidden])],
      { axis: -1, epsilon: eps },
    );

  const ids = g.input(GraphInput.InputIds, TensorDataType.Int64, ['batch', 'chunk']);
  const startPos = g.input(GraphInput.StartPos, TensorDataType.Int64, ['batch']);
  const validLen = g.input(GraphInput.ValidLen, TensorDataType.Int64, ['batch']);
  const targets = g.input(GraphInput.TargetIds, TensorDataType.Int64, ['batch', 'scored']);
  const stateShape = [layers, 'batch', heads, d, d];
  const kvShape = [layers, 'batch', heads, 'past', d];
  const state =
    config.attention === 'dijiang'
      ? g.input(GraphInput.State, TensorDataType.Float, stateShape)
      : undefined;
  const pastKey =
    config.attention === 'softmax'
      ? g.input(GraphInput.PastKey, TensorDataType.Float, kvShape)
      : undefined;
  const pastValue =
    config.attention === 'softmax'
      ? g.input(GraphInput.PastValue, TensorDataType.Float, kvShape)
      : undefined;

  // Batch geometry: B, T as 1-element tensors; tIndex [T]; absolute positions [B, T].
  const idsShape = g.op('Shape', [ids]);
  const batch = slice(idsShape, 0, 1, 0);
  const chunk = slice(idsShape, 1, 2, 0);
  const chunkScalar = g.op('Squeeze', [chunk, g.int64([0])]);
  const batchScalar = g.op('Squeeze', [batch, g.int64([0])]);
  const tIndex = g.op('Range', [g.int64([0], []), chunkScalar, g.int64([1], [])]);
  const positions = g.op('Add', [unsqueeze(startPos, [1]), tIndex]);
  const perHeadShape = (count: number): string =>
    g.op('Concat', [batch, chunk, g.int64([count, d])], { axis: 0 });
  const qkShape = perHeadShape(2 * heads);
  const vShape = perHeadShape(heads);

  // RoPE factors [B*T, 1, 2, d]: cos and sin per dim (cos 1, sin 0 past the rotary dims). Angles in
  // float64: float32 loses ~1e-3 rad at positions ~64k.
  let ropeFactors: string | undefined;
  if (rotary > 0) {
    const frequencies = new Float64Array(d);
    for (let i = 0; i < rotary / 2; i++) {
      const frequency = config.rotaryBase ** (-(2 * i) / rotary);
      frequencies[i] = frequency;
      frequencies[i + rotary / 2] = frequency;
    }
    const angles = g.op('Mul', [
      g.op('Cast', [g.op('Reshape', [positions, g.int64([-1, 1])])], { to: TensorDataType.Double }),
      g.initializer('rope.frequencies', TensorDataType.Double, [d], frequencies),
    ]);
    ropeFactors = unsqueeze(
      fromDouble(
        g.op(
          'Concat',
          [unsqueeze(g.op('Cos', [angles]), [1]), unsqueeze(g.op('Sin', [angles]), [1])],
          { axis: 1 },
        ),
      ),
      [1],
    );
  }
  /** The constant `ropeAndProject` multiplies by: [2d, d] with RoPE, [d, d] without. */
  const ropeMatrix = (name: string, matrix: Float32Array): string =>
    ropeFactors === undefined
      ? constant(name, [d, d], matrix)
      : constant(name, [2 * d, d], ropeThen(matrix, d, rotary));
  /** q and k of all heads [B*T, 2h] -> rope(x) @ M per head, [B*T, 2H, d] (M from ropeMatrix). */
  const ropeAndProject = (qk: string, matrix: string): string => {
    if (ropeFactors === undefined)
      return g.op('MatMul', [g.op('Reshape', [qk, g.int64([-1, 2 * heads, d])]), matrix]);
    const scaled = g.op('Mul', [
      g.op('Reshape', [qk, g.int64([-1, 2 * heads, 1, d])]),
      ropeFactors,
    ]);
    return g.op('MatMul', [g.op('Reshape', [scaled, g.int64([-1, 2 * heads, 2 * d])]), matrix]);
  };
  let softmaxRope = '';
  if (config.attention === 'softmax') {
    const identity = new Float32Array(d * d);
    for (let i = 0; i < d; i++) identity[i * d + i] = 1;
    softmaxRope = ropeMatrix('attention.rope_matrix', identity);
  }
  /** [B*T, count, d] -> [B, count, T, d]. */
  const headsFirst = (x: string, shape: string): string =>
    transpose(reshape(x, shape), [0, 2, 1, 3]);

  // DiJiang decay factors for all layers (DIJIANG.md §3), from log r_t and c_t looked up by the
  // clamped absolute position (the §4 extension) and zeroed on padding. A_t = sum_{u=p..t} log r_u
  // stays float64 so that A_t - A_s keeps its precision; every factor is exp of a value <= 0.
  const tables = config.attention === 'dijiang' ? decayTables(config, weights) : undefined;
  let cumulativeByLayer = '';
  let factorsByLayer = '';
  let stateDecayByLayer = '';
  if (tables !== undefined) {
    const maxPos = config.maxPositionEmbeddings;
    const layerHeads = layers * heads;
    const logRatio = new Float64Array(maxPos * layerHeads);
    const coefficient = new Float32Array(maxPos * layerHeads);
    for (let layer = 0; layer < layers; layer++) {
      const layerLogRatio = tables.logRatio[layer] ?? new Float64Array();
      const layerCoefficient = tables.coefficient[layer] ?? new Float64Array();
      for (let t = 0; t < maxPos; t++) {
        for (let head = 0; head < heads; head++) {
          const at = t * layerHeads + layer * heads + head;
          logRatio[at] = layerLogRatio[t * heads + head] ?? Number.NaN;
          coefficient[at] = layerCoefficient[t * heads + head] ?? Number.NaN;
        }
      }
    }
    const tableIndex = g.op('Min', [positions, g.int64([maxPos - 1], [])]);
    const valid = unsqueeze(g.op('Less', [tIndex, unsqueeze(validLen, [1])]), [2]);
    const lookup = (table: string, zero: string): string =>
      g.op('Where', [valid, g.op('Gather', [table, tableIndex], { axis: 0 }), zero]);
    // [B, T, L*H] -> [L, B, H, T, 1]
    const layerMajor = (x: string): string =>
      unsqueeze(transpose(reshape(x, g.int64([0, 0, layers, heads])), [2, 0, 3, 1]), [4]);
    const logRatios = lookup(
      g.initializer('attention.log_r', TensorDataType.Double, [maxPos, layerHeads], logRatio),
      g.scalar(0, TensorDataType.Double),
    );
    const coefficients = lookup(
      constant('attention.c', [maxPos, layerHeads], coefficient),
      g.scalar(0, computeType),
    );
    const cumulative = g.op('CumSum', [logRatios, g.int64([1], [])]);
    const lastCumulative = slice(cumulative, -1, TO_END, 1);
    const decayExp = (value: string): string => fromDouble(g.op('Exp', [value]));
    cumulativeByLayer = layerMajor(cumulative);
    // Per position: query scale exp(A_t), key scale exp(A_last - A_s) c_s, value scale c_s.
    factorsByLayer = g.op(
      'Concat',
      [
        layerMajor(decayExp(cumulative)),
        layerMajor(
          g.op('Mul', [decayExp(g.op('Sub', [lastCumulative, cumulative])), coefficients]),
        ),
        layerMajor(coefficients),
      ],
      { axis: 4 },
    );
    stateDecayByLayer = layerMajor(decayExp(lastCumulative));
  }
  const stateByLayer =
    state === undefined
      ? []
      : split(
          toCompute(state),
          Array.from({ length: layers }, () => 1),
          0,
        ).map((value) => g.op('Squeeze', [value, g.int64([0])]));

  // Softmax per-graph values: pads for the new positions, key validity [B, 1, T, P + T], scatter index.
  let kvPads = '';
  let keyAllowed = '';
  let scatterIndex = '';
  if (pastKey !== undefined) {
    kvPads = g.op('Concat', [g.int64([0, 0, 0, 0, 0, 0]), chunk, g.int64([0])], { axis: 0 });
    const keyLength = g.op('Add', [slice(g.op('Shape', [pastKey]), 3, 4, 0), chunk]);
    const keyIndex = g.op('Range', [
      g.int64([0], []),
      g.op('Squeeze', [keyLength, g.int64([0])]),
      g.int64([1], []),
    ]);
    keyAllowed = unsqueeze(g.op('LessOrEqual', [keyIndex, unsqueeze(positions, [2])]), [1]);
    scatterIndex = g.op('Expand', [
      unsqueeze(positions, [1, 3]),
      g.op('Concat', [batch, g.int64([heads]), chunk, g.int64([d])], { axis: 0 }),
    ]);
  }

  let h = g.op(
    'Gather',
    [
      param('gpt_neox.embed_in.weight', [config.vocabSize, hidden]),
      g.op('Reshape', [ids, g.int64([-1])]),
    ],
    { axis: 0 },
  );
  const stateOuts: string[] = [];
  const presentKeys: string[] = [];
  const presentValues: string[] = [];

  for (let layer = 0; layer < layers; layer++) {
    const p = layerPrefix(layer);
    const layerIndex = g.int64([layer], []);
    const ln1Weight = tensor(`${p}input_layernorm.weight`, [hidden]);
    const ln1Bias = tensor(`${p}input_layernorm.bias`, [hidden]);
    const qkvWeights = linearWeights(`${p}attention.query_key_value`, 3 * hidden, hidden);
    // query_key_value rows are [q | k | v] per head; regroup them as all q, all k, all v.
    const qkvPart = (offset: number): LinearWeights => {
      const weight = new Float32Array(hidden * hidden);
      const bias = new Float32Array(hidden);
      for (let head = 0; head < heads; head++) {
        const from = head * 3 * d + offset;
        weight.set(
          qkvWeights.weight.subarray(from * hidden, (from + d) * hidden),
          head * d * hidden,
        );
        bias.set(qkvWeights.bias.subarray(from, from + d), head * d);
      }
      return { weight, bias, rows: hidden };
    };
    const attentionParts: LinearWeights[] = [qkvPart(0), qkvPart(d), qkvPart(2 * d)];
    if (config.attention === 'dijiang') {
      // The gate x @ W_G has no bias: as a [out, in] Linear its weight is W_G transposed.
      const gate = tensor(`${p}attention.W_G`, [hidden, hidden]);
      const weight = new Float32Array(hidden * hidden);
      for (let k = 0; k < hidden; k++)
        for (let n = 0; n < hidden; n++) weight[n * hidden + k] = gate[k * hidden + n] ?? 0;
      attentionParts.push({ weight, bias: new Float32Array(hidden), rows: hidden });
    }
    const fused = stackRows(
      [
        ...attentionParts.map((part) => foldNormAffine(part, ln1Weight, ln1Bias)),
        foldNormAffine(
          linearWeights(`${p}mlp.dense_h_to_4h`, ffn, hidden),
          tensor(`${p}post_attention_layernorm.weight`, [hidden]),
          tensor(`${p}post_attention_layernorm.bias`, [hidden]),
        ),
      ],
      hidden,
    );
    const projected = g.op(
      'Gemm',
      [
        normalize(h),
        constant(`${p}fused_input.weight`, [fused.rows, hidden], fused.weight),
        constant(`${p}fused_input.bias`, [fused.rows], fused.bias),
      ],
      { transB: 1 },
    );
    const gated = config.attention === 'dijiang';
    const projections = split(
      projected,
      gated ? [2 * hidden, hidden, hidden, ffn] : [2 * hidden, hidden, ffn],
      1,
    );
    const qk = pick(projections, 0);
    const v = headsFirst(pick(projections, 1), vShape);
    const up = pick(projections, projections.length - 1);

    let attentionInput: string;
    const stateIn = stateByLayer[layer];
    if (stateIn !== undefined) {
      const features = g.op(
        'Softmax',
        [
          ropeAndProject(
            qk,
            ropeMatrix(
              `${p}attention.rope_proj_matrix`,
              tensor(`${p}attention.proj_matrix`, [d, d]),
            ),
          ),
        ],
        { axis: -1 },
      );
      const [phiQ, phiK] = split(headsFirst(features, qkShape), [heads, heads], 1);
      if (phiQ === undefined || phiK === undefined) throw new Error('Split lost an output');
      const [queryScale, keyScale, valueScale] = split(
        g.op('Gather', [factorsByLayer, layerIndex], { axis: 0 }),
        [1, 1, 1],
        3,
      );
      if (queryScale === undefined || keyScale === undefined || valueScale === undefined)
        throw new Error('Split lost an output');
      const cumulativeColumn = g.op('Gather', [cumulativeByLayer, layerIndex], { axis: 0 });
      // exp(A_t - A_s) for s <= t; Trilu drops s > t (where the exponent is positive).
      const intraDecay = g.op(
        'Trilu',
        [
          g.op('Exp', [
            fromDouble(g.op('Sub', [cumulativeColumn, transpose(cumulativeColumn, [0, 1, 3, 2])])),
          ]),
        ],
        { upper: 0 },
      );
      const scores = g.op('MatMul', [phiQ, transpose(phiK, [0, 1, 3, 2])]);
      const intra = g.op('MatMul', [
        g.op('Mul', [scores, intraDecay]),
        g.op('Mul', [v, valueScale]),
      ]);
      const carried = g.op('Mul', [g.op('MatMul', [phiQ, stateIn]), queryScale]);
      const output = g.op('Add', [intra, carried]);
      const stateOut = g.op('Add', [
        g.op('Mul', [stateIn, g.op('Gather', [stateDecayByLayer, layerIndex], { axis: 0 })]),
        g.op('MatMul', [transpose(g.op('Mul', [phiK, keyScale]), [0, 1, 3, 2]), v]),
      ]);
      stateOuts.push(unsqueeze(stateOut, [0]));

      // GroupNorm(num_groups = d) per token: groups are `heads` consecutive channels.
      const merged = g.op('Reshape', [transpose(output, [0, 2, 1, 3]), g.int64([-1, d, heads])]);
      const normalized = g.op('Reshape', [
        g.op(
          'LayerNormalization',
          [
            merged,
            constant(
              `${p}attention.group_norm.unit_scale`,
              [heads],
              new Float32Array(heads).fill(1),
            ),
            constant(`${p}attention.group_norm.zero_bias`, [heads], new Float32Array(heads)),
          ],
          { axis: -1, epsilon: eps },
        ),
        g.int64([-1, hidden]),
      ]);
      const groupNorm = g.op('Add', [
        g.op('Mul', [normalized, param(`${p}attention.group_norm.weight`, [hidden])]),
        param(`${p}attention.group_norm.bias`, [hidden]),
      ]);
      const gate = pick(projections, 2);
      attentionInput = g.op('Mul', [groupNorm, g.op('Mul', [gate, g.op('Sigmoid', [gate])])]);
    } else if (pastKey !== undefined && pastValue !== undefined) {
      const [q, k] = split(headsFirst(ropeAndProject(qk, softmaxRope), qkShape), [heads, heads], 1);
      if (q === undefined || k === undefined) throw new Error('Split lost an output');
      const withNew = (past: string, fresh: string): string =>
        g.op(
          'ScatterElements',
          [
            g.op('Pad', [toCompute(g.op('Gather', [past, layerIndex], { axis: 0 })), kvPads]),
            scatterIndex,
            fresh,
          ],
          { axis: 2 },
        );
      const keys = withNew(pastKey, k);
      const values = withNew(pastValue, v);
      presentKeys.push(unsqueeze(keys, [0]));
      presentValues.push(unsqueeze(values, [0]));
      const scores = g.op('Mul', [
        g.op('MatMul', [q, transpose(keys, [0, 1, 3, 2])]),
        g.scalar(1 / Math.sqrt(d), computeType),
      ]);
      const masked = g.op('Where', [keyAllowed, scores, g.scalar(-Infinity, computeType)]);
      const attentionHeads = g.op('MatMul', [g.op('Softmax', [masked], { axis: -1 }), values]);
      attentionInput = g.op('Reshape', [
        transpose(attentionHeads, [0, 2, 1, 3]),
        g.int64([-1, hidden]),
      ]);
    } else {
      throw new Error(`attention ${config.attention} has no state input`);
    }

    // attention.dense and mlp.dense_4h_to_h as one Gemm over [attention input | gelu(up)].
    const dense = tensor(`${p}attention.dense.weight`, [hidden, hidden]);
    const down = tensor(`${p}mlp.dense_4h_to_h.weight`, [hidden, ffn]);
    const outWeight = new Float32Array(hidden * (hidden + ffn));
    for (let row = 0; row < hidden; row++) {
      outWeight.set(dense.subarray(row * hidden, (row + 1) * hidden), row * (hidden + ffn));
      outWeight.set(down.subarray(row * ffn, (row + 1) * ffn), row * (hidden + ffn) + hidden);
    }
    const denseBias = tensor(`${p}attention.dense.bias`, [hidden]);
    const downBias = tensor(`${p}mlp.dense_4h_to_h.bias`, [hidden]);
    const outBias = Float32Array.from(denseBias, (value, i) => value + (downBias[i] ?? 0));
    const blockOut = g.op(
      'Gemm',
      [
        g.op('Concat', [attentionInput, g.op('Gelu', [up])], { axis: 1 }),
        constant(`${p}fused_output.weight`, [hidden, hidden + ffn], outWeight),
        constant(`${p}fused_output.bias`, [hidden], outBias),
      ],
      { transB: 1 },
    );
    h = g.op('Add', [h, blockOut]);
  }

  const finalHidden = layerNorm(h, 'gpt_neox.final_layer_norm');
  const embedOut = param('embed_out.weight', [config.vocabSize, hidden]);
  // Each row's last valid position in the flattened [B * T] rows (a row with valid_len 0 reads its first).
  const lastRow = g.op('Add', [
    g.op('Mul', [g.op('Range', [g.int64([0], []), batchScalar, g.int64([1], [])]), chunkScalar]),
    g.op('Max', [g.op('Sub', [validLen, g.int64([1], [])]), g.int64([0], [])]),
  ]);
  const logits = g.op('Gemm', [g.op('Gather', [finalHidden, lastRow], { axis: 0 }), embedOut], {
    transB: 1,
  });
  const logits32 = toFloat32(logits);
  g.output(GraphOutput.Logits, logits32, TensorDataType.Float, ['batch', config.vocabSize]);
  // max + log(sum(exp(logits - max))): stable however large the logits.
  const rowMax = g.op('ReduceMax', [logits32, g.int64([1])], { keepdims: 1 });
  const logNormaliser = g.op('Add', [
    rowMax,
    g.op('Log', [
      g.op('ReduceSum', [g.op('Exp', [g.op('Sub', [logits32, rowMax])]), g.int64([1])], {
        keepdims: 1,
      }),
    ]),
  ]);
  g.output(
    GraphOutput.LogitsLogNormaliser,
    g.op('Squeeze', [logNormaliser, g.int64([1])]),
    TensorDataType.Float,
    ['batch'],
  );

  // Scoring: only the first S positions of each row, so S = 0 costs nothing.
  const scored = slice(g.op('Shape', [targets]), 1, 2, 0);
  const scoredHidden = g.op('Reshape', [
    g.op('Slice', [
      g.op('Reshape', [
        finalHidden,
        g.op('Concat', [batch, chunk, g.int64([hidden])], { axis: 0 }),
      ]),
      g.int64([0]),
      scored,
      g.int64([1]),
    ]),
    g.int64([-1, hidden]),
  ]);
  const logProbs = g.op(
    'LogSoftmax',
    [toFloat32(g.op('Gemm', [scoredHidden, embedOut], { transB: 1 }))],
    { axis: -1 },
  );
  const targetLogProbs = g.op(
    'Reshape',
    [
      g.op('GatherElements', [logProbs, g.op('Reshape', [targets, g.int64([-1, 1])])], { axis: 1 }),
      g.op('Shape', [targets]),
    ],
    { allowzero: 1 },
  );
  g.output(GraphOutput.TargetLogprobs, targetLogProbs, TensorDataType.Float, ['batch', 'scored']);

  if (config.attention === 'dijiang') {
    g.output(
      GraphOutput.State,
      toFloat32(g.op('Concat', stateOuts, { axis: 0 })),
      TensorDataType.Float,
      stateShape,
    );
  } else {
    const presentShape = [layers, 'batch', heads, 'present', d];
    g.output(
      GraphOutput.PresentKey,
      toFloat32(g.op('Concat', presentKeys, { axis: 0 })),
      TensorDataType.Float,
      presentShape,
    );
    g.output(
      GraphOutput.PresentValue,
      toFloat32(g.op('Concat', presentValues, { axis: 0 })),
      TensorDataType.Float,
      presentShape,
    );
  }
  return g;
}
