/**
 * DiJiang attention in its chunked form (DIJIANG.md §3): the feature map, the masked intra-chunk
 * matrix plus the carried state, then GroupNorm and the SiLU gate (§2).
 */
import { layerPrefix } from '../../weights.js';
import {
  constant,
  fromDouble,
  headsFirst,
  param,
  split,
  tensor,
  toCompute,
  transpose,
  unsqueeze,
  type GraphContext,
} from '../graph-context.js';
import {
  decayFactors,
  ropeAndProject,
  ropeMatrix,
  type ChunkGeometry,
  type DecayFactors,
} from '../positions.js';
import type { AttentionOutput, LayerStep } from './shared.js';

/** What every DiJiang layer reads: the decay factors and its slice of the incoming state. */
export interface DijiangGraphValues {
  readonly decay: DecayFactors;
  /** Per layer, the incoming state [B, H, d, d] in the compute type. */
  readonly stateByLayer: readonly string[];
}

export function dijiangGraphValues(
  ctx: GraphContext,
  geometry: ChunkGeometry,
  validLen: string,
  state: string,
): DijiangGraphValues {
  const { g } = ctx;
  const decay = decayFactors(ctx, geometry, validLen);
  const stateByLayer = split(
    g,
    toCompute(ctx, state),
    Array.from({ length: ctx.layers }, () => 1),
    0,
  ).map((value) => g.op('Squeeze', [value, g.int64([0])]));
  return { decay, stateByLayer };
}

export function dijiangAttention(
  ctx: GraphContext,
  perGraph: DijiangGraphValues,
  rope: string | undefined,
  geometry: ChunkGeometry,
  step: LayerStep,
): AttentionOutput<string> {
  const { g, heads, headDim: d, hidden } = ctx;
  const { layerIndex, projections } = step;
  const p = layerPrefix(step.layer);
  const stateIn = perGraph.stateByLayer[step.layer];
  if (stateIn === undefined) throw new Error(`no state for layer ${step.layer}`);
  const features = g.op(
    'Softmax',
    [
      ropeAndProject(
        ctx,
        rope,
        projections.qk,
        ropeMatrix(
          ctx,
          rope,
          `${p}attention.rope_proj_matrix`,
          tensor(ctx, `${p}attention.proj_matrix`, [d, d]),
        ),
      ),
    ],
    { axis: -1 },
  );
  const [phiQ, phiK] = split(g, headsFirst(g, features, geometry.qkShape), [heads, heads], 1);
  if (phiQ === undefined || phiK === undefined) throw new Error('Split lost an output');
  const [queryScale, keyScale, valueScale] = split(
    g,
    g.op('Gather', [perGraph.decay.factorsByLayer, layerIndex], { axis: 0 }),
    [1, 1, 1],
    3,
  );
  if (queryScale === undefined || keyScale === undefined || valueScale === undefined)
    throw new Error('Split lost an output');
  const cumulativeColumn = g.op('Gather', [perGraph.decay.cumulativeByLayer, layerIndex], {
    axis: 0,
  });
  // exp(A_t - A_s) for s <= t; Trilu drops s > t (where the exponent is positive).
  const intraDecay = g.op(
    'Trilu',
    [
      g.op('Exp', [
        fromDouble(
          ctx,
          g.op('Sub', [cumulativeColumn, transpose(g, cumulativeColumn, [0, 1, 3, 2])]),
        ),
      ]),
    ],
    { upper: 0 },
  );
  const v = projections.v;
  const scores = g.op('MatMul', [phiQ, transpose(g, phiK, [0, 1, 3, 2])]);
  const intra = g.op('MatMul', [g.op('Mul', [scores, intraDecay]), g.op('Mul', [v, valueScale])]);
  const carried = g.op('Mul', [g.op('MatMul', [phiQ, stateIn]), queryScale]);
  const output = g.op('Add', [intra, carried]);
  const stateOut = g.op('Add', [
    g.op('Mul', [
      stateIn,
      g.op('Gather', [perGraph.decay.stateDecayByLayer, layerIndex], { axis: 0 }),
    ]),
    g.op('MatMul', [transpose(g, g.op('Mul', [phiK, keyScale]), [0, 1, 3, 2]), v]),
  ]);
  // The state after the chunk, [1, B, H, d, d].
  const state = unsqueeze(g, stateOut, [0]);

  // GroupNorm(num_groups = d) per token: groups are `heads` consecutive channels.
  const merged = g.op('Reshape', [transpose(g, output, [0, 2, 1, 3]), g.int64([-1, d, heads])]);
  const normalized = g.op('Reshape', [
    g.op(
      'LayerNormalization',
      [
        merged,
        constant(
          ctx,
          `${p}attention.group_norm.unit_scale`,
          [heads],
          new Float32Array(heads).fill(1),
        ),
        constant(ctx, `${p}attention.group_norm.zero_bias`, [heads], new Float32Array(heads)),
      ],
      { axis: -1, epsilon: ctx.eps },
    ),
    g.int64([-1, hidden]),
  ]);
  const groupNorm = g.op('Add', [
    g.op('Mul', [normalized, param(ctx, `${p}attention.group_norm.weight`, [hidden])]),
    param(ctx, `${p}attention.group_norm.bias`, [hidden]),
  ]);
  const gate = projections.gate;
  if (gate === undefined) throw new Error('a DiJiang layer needs the gate projection');
  const attention = g.op('Mul', [groupNorm, g.op('Mul', [gate, g.op('Sigmoid', [gate])])]);
  return { attention, carry: state };
}
