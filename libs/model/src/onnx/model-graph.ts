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
  TargetLogprobs: 'target_logprobs',
  State: 'state_out',
  PresentKey: 'present_key',
  PresentValue: 'present_value',
} as const;

// Slice end meaning "to the end of the axis".
const TO_END = Number.MAX_SAFE_INTEGER;

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
  const eps = float(config.layerNormEps);
  const param = (name: string, shape: readonly number[]): string =>
    g.floatInitializer(name, shape, getTensor(weights, name, shape).data, computeType);
  const toCompute = (value: string): string =>
    precision === 'fp32' ? value : g.op('Cast', [value], { to: computeType });
  const toFloat32 = (value: string): string =>
    precision === 'fp32' ? value : g.op('Cast', [value], { to: TensorDataType.Float });
  const unsqueeze = (value: string, axes: number[]): string =>
    g.op('Unsqueeze', [value, g.int64(axes)]);
  const transpose = (value: string, perm: number[]): string => g.op('Transpose', [value], { perm });
  const slice = (value: string, start: number, end: number, axis: number): string =>
    g.op('Slice', [value, g.int64([start]), g.int64([end]), g.int64([axis])]);
  const linear = (x: string, prefix: string, outFeatures: number, inFeatures: number): string =>
    g.op(
      'Gemm',
      [
        x,
        param(`${prefix}.weight`, [outFeatures, inFeatures]),
        param(`${prefix}.bias`, [outFeatures]),
      ],
      { transB: 1 },
    );
  const layerNorm = (x: string, prefix: string): string =>
    g.op(
      'LayerNormalization',
      [x, param(`${prefix}.weight`, [hidden]), param(`${prefix}.bias`, [hidden])],
      {
        axis: -1,
        epsilon: eps,
      },
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
  const headsShape = g.op('Concat', [batch, chunk, g.int64([heads, 3 * d])], { axis: 0 });

  // RoPE angles in float64: float32 loses ~1e-3 rad at positions ~64k.
  let cos = '';
  let sin = '';
  if (rotary > 0) {
    const invFreq = Float64Array.from(
      { length: rotary / 2 },
      (_, i) => config.rotaryBase ** (-(2 * i) / rotary),
    );
    const angles = g.op('Mul', [
      unsqueeze(g.op('Cast', [positions], { to: TensorDataType.Double }), [2]),
      g.initializer('rope.inv_freq', TensorDataType.Double, [rotary / 2], invFreq),
    ]);
    const doubled = g.op('Concat', [angles, angles], { axis: -1 });
    cos = unsqueeze(toComputeFromDouble(g, g.op('Cos', [doubled]), computeType), [1]);
    sin = unsqueeze(toComputeFromDouble(g, g.op('Sin', [doubled]), computeType), [1]);
  }
  const rope = (x: string): string => {
    if (rotary === 0) return x;
    const rotated = slice(x, 0, rotary, 3);
    const first = slice(rotated, 0, rotary / 2, 3);
    const second = slice(rotated, rotary / 2, rotary, 3);
    const half = g.op('Concat', [g.op('Neg', [second]), first], { axis: 3 });
    const out = g.op('Add', [g.op('Mul', [rotated, cos]), g.op('Mul', [half, sin])]);
    return rotary === d ? out : g.op('Concat', [out, slice(x, rotary, d, 3)], { axis: 3 });
  };

  // DiJiang per-graph values: clamped table index, validity [B, 1, T], causal mask [t, s].
  const tables = config.attention === 'dijiang' ? decayTables(config, weights) : undefined;
  const maxPos = config.maxPositionEmbeddings;
  let tableIndex = '';
  let validPerHead = '';
  let causal = '';
  if (tables !== undefined) {
    tableIndex = g.op('Min', [positions, g.int64([maxPos - 1], [])]);
    validPerHead = unsqueeze(g.op('Less', [tIndex, unsqueeze(validLen, [1])]), [1]);
    causal = g.op('GreaterOrEqual', [unsqueeze(tIndex, [1]), unsqueeze(tIndex, [0])]);
  }

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
    {
      axis: 0,
    },
  );
  const stateOuts: string[] = [];
  const presentKeys: string[] = [];
  const presentValues: string[] = [];

  for (let layer = 0; layer < layers; layer++) {
    const p = layerPrefix(layer);
    const ln1 = layerNorm(h, `${p}input_layernorm`);
    const ln2 = layerNorm(h, `${p}post_attention_layernorm`);
    const qkv = linear(ln1, `${p}attention.query_key_value`, 3 * hidden, hidden);
    const perHead = transpose(g.op('Reshape', [qkv, headsShape]), [0, 2, 1, 3]);
    const [qRaw, kRaw, v] = g.ops('Split', [perHead, g.int64([d, d, d])], { axis: 3 }, 3);
    if (qRaw === undefined || kRaw === undefined || v === undefined)
      throw new Error('Split lost an output');
    const q = rope(qRaw);
    const k = rope(kRaw);

    let attentionHeads: string;
    let attentionInput: string;
    if (state !== undefined && tables !== undefined) {
      const layerIndex = g.int64([layer], []);
      const stateIn = toCompute(g.op('Gather', [state, layerIndex], { axis: 0 }));
      const logRatioTable = g.initializer(
        `${p}attention.log_r`,
        TensorDataType.Double,
        [maxPos, heads],
        tables.logRatio[layer] ?? new Float64Array(),
      );
      const coefficientTable = g.floatInitializer(
        `${p}attention.c`,
        [maxPos, heads],
        Float32Array.from(tables.coefficient[layer] ?? []),
        computeType,
      );
      const perHeadTable = (table: string, zero: string): string =>
        g.op('Where', [
          validPerHead,
          transpose(g.op('Gather', [table, tableIndex], { axis: 0 }), [0, 2, 1]),
          zero,
        ]);
      const logRatio = perHeadTable(logRatioTable, g.scalar(0, TensorDataType.Double));
      const coefficient = perHeadTable(coefficientTable, g.scalar(0, computeType));
      // A_t = sum_{u=p..t} log r_u, in float64 so that A_t - A_s keeps its precision.
      const cumulative = g.op('CumSum', [logRatio, g.int64([2], [])]);
      const lastCumulative = slice(cumulative, -1, TO_END, 2);
      const decayMatrix = g.op('Where', [
        causal,
        g.op('Exp', [
          toComputeFromDouble(
            g,
            g.op('Sub', [unsqueeze(cumulative, [3]), unsqueeze(cumulative, [2])]),
            computeType,
          ),
        ]),
        g.scalar(0, computeType),
      ]);
      const pairWeights = g.op('Mul', [decayMatrix, unsqueeze(coefficient, [2])]);

      const projection = param(`${p}attention.proj_matrix`, [d, d]);
      const phiQ = g.op('Softmax', [g.op('MatMul', [q, projection])], { axis: -1 });
      const phiK = g.op('Softmax', [g.op('MatMul', [k, projection])], { axis: -1 });
      const scores = g.op('MatMul', [phiQ, transpose(phiK, [0, 1, 3, 2])]);
      const intra = g.op('MatMul', [g.op('Mul', [scores, pairWeights]), v]);
      const carried = g.op('Mul', [
        g.op('MatMul', [phiQ, stateIn]),
        unsqueeze(toComputeFromDouble(g, g.op('Exp', [cumulative]), computeType), [3]),
      ]);
      const output = g.op('Add', [intra, carried]);

      const keyWeights = g.op('Mul', [
        toComputeFromDouble(
          g,
          g.op('Exp', [g.op('Sub', [lastCumulative, cumulative])]),
          computeType,
        ),
        coefficient,
      ]);
      const stateOut = g.op('Add', [
        g.op('Mul', [
          stateIn,
          unsqueeze(toComputeFromDouble(g, g.op('Exp', [lastCumulative]), computeType), [3]),
        ]),
        g.op('MatMul', [
          transpose(g.op('Mul', [phiK, unsqueeze(keyWeights, [3])]), [0, 1, 3, 2]),
          v,
        ]),
      ]);
      stateOuts.push(unsqueeze(stateOut, [0]));
      attentionHeads = output;

      // GroupNorm(num_groups = d) per token: groups are `heads` consecutive channels.
      const merged = g.op('Reshape', [
        transpose(attentionHeads, [0, 2, 1, 3]),
        g.int64([-1, d, heads]),
      ]);
      const ones = g.floatInitializer(
        `${p}attention.group_norm.unit_scale`,
        [heads],
        new Float32Array(heads).fill(1),
        computeType,
      );
      const zeros = g.floatInitializer(
        `${p}attention.group_norm.zero_bias`,
        [heads],
        new Float32Array(heads),
        computeType,
      );
      const normalized = g.op('Reshape', [
        g.op('LayerNormalization', [merged, ones, zeros], { axis: -1, epsilon: eps }),
        g.int64([-1, hidden]),
      ]);
      const groupNorm = g.op('Add', [
        g.op('Mul', [normalized, param(`${p}attention.group_norm.weight`, [hidden])]),
        param(`${p}attention.group_norm.bias`, [hidden]),
      ]);
      const gate = g.op('MatMul', [ln1, param(`${p}attention.W_G`, [hidden, hidden])]);
      attentionInput = g.op('Mul', [groupNorm, g.op('Mul', [gate, g.op('Sigmoid', [gate])])]);
    } else if (pastKey !== undefined && pastValue !== undefined) {
      const layerIndex = g.int64([layer], []);
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
      attentionHeads = g.op('MatMul', [g.op('Softmax', [masked], { axis: -1 }), values]);
      attentionInput = g.op('Reshape', [
        transpose(attentionHeads, [0, 2, 1, 3]),
        g.int64([-1, hidden]),
      ]);
    } else {
      throw new Error(`attention ${config.attention} has no state input`);
    }
    const attention = linear(attentionInput, `${p}attention.dense`, hidden, hidden);

    const up = linear(ln2, `${p}mlp.dense_h_to_4h`, config.intermediateSize, hidden);
    const gelu = g.op('Mul', [
      g.op('Mul', [up, g.scalar(0.5, computeType)]),
      g.op('Add', [
        g.op('Erf', [g.op('Mul', [up, g.scalar(Math.SQRT1_2, computeType)])]),
        g.scalar(1, computeType),
      ]),
    ]);
    const mlp = linear(gelu, `${p}mlp.dense_4h_to_h`, hidden, config.intermediateSize);
    h = g.op('Add', [g.op('Add', [h, attention]), mlp]);
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
  g.output(GraphOutput.Logits, toFloat32(logits), TensorDataType.Float, [
    'batch',
    config.vocabSize,
  ]);

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

function toComputeFromDouble(g: GraphBuilder, value: string, computeType: TensorDataType): string {
  return g.op('Cast', [value], { to: computeType });
}
