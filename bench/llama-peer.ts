/**
 * llama.cpp through node-llama-cpp, driven the way its users drive it: a GGUF file written by
 * `model export-gguf`, CPU only, the prebuilt binary (never a build), contexts of N sequences whose
 * decodes node-llama-cpp batches into one llama_decode per step. Also the check that llama.cpp
 * computes the model we built: its log-probs against the float64 oracle's.
 */
import { getLlama, LlamaLogLevel, TokenBias } from 'node-llama-cpp';
import type { Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';
import {
  logSoftmaxRows,
  oracleLogits,
  type GgufFileType,
  type ModelConfig,
  type Weights,
} from '#model';

/** The one CPU backend of this process, with at most `threads` compute threads. */
export async function openLlama(threads: number): Promise<Llama> {
  return getLlama({
    gpu: false,
    build: 'never',
    maxThreads: threads,
    logLevel: LlamaLogLevel.error,
  });
}

/**
 * Most |log p_llama - log p_oracle| over the vocabulary allowed per weight type, on the scaled
 * test weights (which make attention and every layer matter). llama.cpp's CPU GELU is the tanh
 * approximation read from a float16 table, where the model (and the oracle) use the exact erf
 * GELU: that alone costs ~1e-3 in f32 (measured 1.6e-3 at most). f16 adds the rounding of the
 * weights and of the activations fed to the matrix products (measured 2.4e-3); q8_0 quantises
 * weights to 8 bits per 32-value block and activations to 8 bits (measured 5e-2); q4_0 weights to
 * 4 bits (measured 0.58: a coarse check, it only tells a right file from a wrong one).
 * A wrong layout (e.g. QKV left in Hugging Face's per-head order) differs by more than 2.
 */
export const LOGPROB_TOLERANCE: Record<GgufFileType, number> = {
  f32: 5e-3,
  f16: 1e-2,
  q8_0: 0.15,
  q4_0: 1,
};

/**
 * llama.cpp's log-probs at `positions` of `ids` (rows [positions, vocab]), from the softmax of its
 * logits, which is what node-llama-cpp returns. The KV cache is node-llama-cpp's default, float16,
 * as in the timed runs (measured: it moves the f32 difference by under 1e-4; GELU dominates).
 */
export async function llamaLogProbs(
  model: LlamaModel,
  ids: readonly number[],
  positions: readonly number[],
  vocab: number,
  threads: number,
): Promise<Float64Array> {
  const context = await model.createContext({
    contextSize: Math.max(256, ids.length),
    sequences: 1,
    threads,
  });
  try {
    const evaluated = await context
      .getSequence()
      .controlledEvaluate(
        ids.map((id, index) =>
          positions.includes(index)
            ? [id as Token, { generateNext: { probabilities: true, options: { temperature: 0 } } }]
            : (id as Token),
        ),
      );
    const rows = new Float64Array(positions.length * vocab).fill(Number.NaN);
    positions.forEach((position, row) => {
      const probabilities = evaluated[position]?.next.probabilities;
      if (probabilities === undefined)
        throw new Error(`llama.cpp returned no logits at ${position}`);
      for (const [token, probability] of probabilities) {
        rows[row * vocab + token] = Math.log(probability);
      }
    });
    return rows;
  } finally {
    await context.dispose();
  }
}

export interface LogitCheck {
  type: GgufFileType;
  tokens: number;
  positions: readonly number[];
  /** Most |log p_llama - log p_oracle|. */
  maxLogProbDifference: number;
  /** max - min of the oracle's log-probs: the scale the difference is read against. */
  oracleLogProbRange: number;
  tolerance: number;
  passed: boolean;
}

/** Compares llama.cpp's log-probs for `ids` with the float64 oracle's on the same weights. */
export async function checkAgainstOracle(
  model: LlamaModel,
  type: GgufFileType,
  config: ModelConfig,
  weights: Weights,
  ids: readonly number[],
  threads: number,
): Promise<LogitCheck> {
  const positions = [0, Math.floor(ids.length / 2), ids.length - 1];
  const expected = logSoftmaxRows(
    oracleLogits(config, weights, ids, { logitPositions: positions }),
    config.vocabSize,
  );
  const actual = await llamaLogProbs(model, ids, positions, config.vocabSize, threads);
  let worst = 0;
  let low = Infinity;
  let high = -Infinity;
  expected.forEach((value, index) => {
    worst = Math.max(worst, Math.abs((actual[index] ?? Number.NaN) - value) || Infinity);
    low = Math.min(low, value);
    high = Math.max(high, value);
  });
  const tolerance = LOGPROB_TOLERANCE[type];
  return {
    type,
    tokens: ids.length,
    positions,
    maxLogProbDifference: worst,
    oracleLogProbRange: high - low,
    tolerance,
    passed: worst <= tolerance,
  };
}

/** Greedy decoding with end of text banned, so every sequence decodes its whole token budget. */
function greedyOptions(model: LlamaModel, endOfText: number) {
  const bias = new TokenBias(model.tokenizer);
  bias.set(endOfText as Token, 'never');
  return { temperature: 0, tokenBias: bias };
}

/**
 * Decodes `tokens` tokens greedily after the sequence's context, recording each token's arrival
 * time, then erases them again so the next round starts from the same context.
 */
export async function decodeAndTrim(
  sequence: LlamaContextSequence,
  tokens: number,
  endOfText: number,
): Promise<number[]> {
  const start = sequence.nextTokenIndex;
  const last = sequence.contextTokens.at(-1) ?? (0 as Token);
  const arrivals: number[] = [];
  // The last context token is fed again (as a decode step at position `start`): every round then
  // begins from the same context and position.
  await sequence.eraseContextTokenRanges([{ start: start - 1, end: start }]);
  const generator = sequence.evaluate([last], greedyOptions(sequence.model, endOfText));
  for await (const token of generator) {
    if (token === endOfText) throw new Error('llama.cpp sampled the banned end of text');
    arrivals.push(performance.now());
    if (arrivals.length >= tokens) break;
  }
  await sequence.eraseContextTokenRanges([{ start, end: sequence.nextTokenIndex }]);
  if (sequence.nextTokenIndex !== start) {
    throw new Error(`llama.cpp kept ${sequence.nextTokenIndex - start} decoded tokens`);
  }
  return arrivals;
}

/** Appends `ids` to the sequence's context (prefill), in node-llama-cpp's batches. */
export async function prefill(
  sequence: LlamaContextSequence,
  ids: readonly number[],
): Promise<void> {
  await sequence.evaluateWithoutGeneratingNewTokens(ids as Token[]);
}

/** A context of `sequences` sequences of `contextSize` tokens each, with the given threads. */
export async function createContext(
  model: LlamaModel,
  contextSize: number,
  sequences: number,
  threads: number,
): Promise<LlamaContext> {
  return model.createContext({
    contextSize,
    sequences,
    threads: { ideal: threads, min: threads },
    batchSize: 512,
  });
}
