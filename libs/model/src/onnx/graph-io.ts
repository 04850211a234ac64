/** The model graph's input and output names (the contract with the runtime) and its inputs. */
import type { GraphContext } from './graph-context.js';
import { TensorDataType, type Dim } from './proto.js';

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

/** What a chunk carries in from earlier chunks: DiJiang's state or softmax's keys and values. */
export type CacheInputs =
  | { readonly kind: 'dijiang'; readonly state: string }
  | { readonly kind: 'softmax'; readonly pastKey: string; readonly pastValue: string };

export interface GraphInputs {
  readonly ids: string;
  readonly startPos: string;
  readonly validLen: string;
  readonly targets: string;
  readonly cache: CacheInputs;
}

/** DiJiang's state: [layers, B, H, d, d]. */
export function stateDims(ctx: GraphContext): Dim[] {
  return [ctx.layers, 'batch', ctx.heads, ctx.headDim, ctx.headDim];
}

export function declareInputs(ctx: GraphContext): GraphInputs {
  const { g } = ctx;
  const ids = g.input(GraphInput.InputIds, TensorDataType.Int64, ['batch', 'chunk']);
  const startPos = g.input(GraphInput.StartPos, TensorDataType.Int64, ['batch']);
  const validLen = g.input(GraphInput.ValidLen, TensorDataType.Int64, ['batch']);
  const targets = g.input(GraphInput.TargetIds, TensorDataType.Int64, ['batch', 'scored']);
  const kvDims = [ctx.layers, 'batch', ctx.heads, 'past', ctx.headDim];
  let cache: CacheInputs;
  switch (ctx.config.attention) {
    case 'dijiang':
      cache = {
        kind: 'dijiang',
        state: g.input(GraphInput.State, TensorDataType.Float, stateDims(ctx)),
      };
      break;
    case 'softmax':
      cache = {
        kind: 'softmax',
        pastKey: g.input(GraphInput.PastKey, TensorDataType.Float, kvDims),
        pastValue: g.input(GraphInput.PastValue, TensorDataType.Float, kvDims),
      };
      break;
  }
  return { ids, startPos, validLen, targets, cache };
}
