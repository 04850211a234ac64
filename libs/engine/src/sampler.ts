import { counterUniform } from './random.js';

/** Sampling parameters, in the engine's own (camelCase) terms. */
export interface SamplingParams {
  /** 0 is greedy (argmax). */
  temperature: number;
  /** Nucleus: keep the most likely tokens whose probabilities sum to at least this. 1 disables. */
  topP: number;
  /** Keep the `topK` most likely tokens. 0 disables. */
  topK: number;
  /** Drop tokens less likely than `minP` times the most likely one. 0 disables. */
  minP: number;
  /** OpenAI: subtracted once from each token already generated. */
  presencePenalty: number;
  /** OpenAI: subtracted per occurrence of each token already generated. */
  frequencyPenalty: number;
  /** CTRL-style, over prompt and output: positive logits divided by it, negative multiplied. */
  repetitionPenalty: number;
  /** Added to the logits of the given token ids (OpenAI `logit_bias`, -100 … 100). */
  logitBias: ReadonlyMap<number, number>;
  /** How many alternatives to report with each token's log-probability; undefined = none. */
  topLogprobs: number | undefined;
  seed: number;
}

/**
 * Sampling from the model's own distribution: temperature 1, nothing truncated, biased or
 * penalised, seed 0. Spread it and override what differs, e.g. `{ ...DEFAULT_SAMPLING,
 * temperature: 0 }` for greedy decoding.
 */
export const DEFAULT_SAMPLING: Readonly<SamplingParams> = {
  temperature: 1,
  topP: 1,
  topK: 0,
  minP: 0,
  presencePenalty: 0,
  frequencyPenalty: 0,
  repetitionPenalty: 1,
  logitBias: new Map(),
  topLogprobs: undefined,
  seed: 0,
};

export interface TokenLogprob {
  token: number;
  logprob: number;
}

export interface SampledToken extends TokenLogprob {
  /** The most likely alternatives, best first, when `topLogprobs` is set. */
  top: TokenLogprob[] | undefined;
}

/**
 * The row `adjusted` writes into, shared by every sampler of the thread: sampling is synchronous
 * and the row never outlives one `next` call, so a batch of 32 sequences over a 50k vocabulary
 * does not allocate (and fault in) 32 fresh 400 kB rows per step.
 */
let adjustedRow = new Float64Array(0);

/**
 * Chooses the tokens of one output sequence ("choice"). Order of operations, as in common
 * servers: logit bias, repetition penalty, presence/frequency penalties, then greedy or
 * temperature, top-k, top-p and min-p, then one counter-based uniform draw.
 *
 * Reported log-probabilities are the model's own (log-softmax of the raw logits), before any
 * penalty, bias or temperature, so they describe the model and not the sampling settings.
 */
export class TokenSampler {
  private readonly outputCounts = new Map<number, number>();
  private readonly seen = new Set<number>();
  private generated = 0;

  constructor(
    private readonly params: SamplingParams,
    /** Which output sequence this is when a request asks for several (`n`). */
    private readonly choice: number,
    promptTokens: Iterable<number>,
  ) {
    for (const token of promptTokens) this.seen.add(token);
  }

  /** The number of tokens chosen so far; the next draw uses this index. */
  get index(): number {
    return this.generated;
  }

  /**
   * Picks the next token from `logits` (one row of the vocabulary) and records it.
   * `logNormaliser` is log sum exp of the row when the model already computed it (the graph
   * does); otherwise it is computed here.
   */
  next(logits: Float32Array, logNormaliser?: number): SampledToken {
    const chosen = this.choose(logits);
    this.accept(chosen);
    return {
      token: chosen,
      ...describe(logits, chosen, this.params.topLogprobs, logNormaliser ?? logSumExp(logits)),
    };
  }

  /**
   * Records a token chosen earlier (a resumed sequence replays its already-streamed tokens), so
   * penalties and the random counter continue exactly where the interrupted run stopped.
   */
  accept(token: number): void {
    this.outputCounts.set(token, (this.outputCounts.get(token) ?? 0) + 1);
    this.seen.add(token);
    this.generated += 1;
  }

  private choose(raw: Float32Array): number {
    const { params } = this;
    const logits = this.adjusted(raw);
    if (params.temperature === 0) return argmax(logits);
    const uniform = counterUniform(params.seed, this.choice, this.generated);
    if (params.topK === 0 && params.topP >= 1 && params.minP === 0) {
      return sampleWhole(logits, params.temperature, uniform);
    }
    const candidates = this.candidates(logits);
    let total = 0;
    for (const candidate of candidates) total += candidate.weight;
    let threshold = uniform * total;
    for (const candidate of candidates) {
      threshold -= candidate.weight;
      if (threshold < 0) return candidate.token;
    }
    // Rounding can leave a sliver of `threshold`: the last candidate takes it.
    const last = candidates[candidates.length - 1];
    if (last === undefined) throw new Error('no token left to sample');
    return last.token;
  }

  /**
   * The logits after bias and penalties. Without any, the model's row itself: no copy of a
   * vocabulary-sized row per token when nothing changes it.
   */
  private adjusted(raw: Float32Array): Float32Array | Float64Array {
    const { params } = this;
    const penalising =
      params.repetitionPenalty !== 1 ||
      ((params.presencePenalty !== 0 || params.frequencyPenalty !== 0) &&
        this.outputCounts.size > 0);
    if (params.logitBias.size === 0 && !penalising) return raw;
    if (adjustedRow.length !== raw.length) adjustedRow = new Float64Array(raw.length);
    const logits = adjustedRow;
    logits.set(raw);
    for (const [token, bias] of params.logitBias) {
      if (token < logits.length) logits[token] = (logits[token] ?? 0) + bias;
    }
    if (params.repetitionPenalty !== 1) {
      for (const token of this.seen) {
        const value = logits[token];
        if (value === undefined) continue;
        logits[token] =
          value > 0 ? value / params.repetitionPenalty : value * params.repetitionPenalty;
      }
    }
    if (params.presencePenalty !== 0 || params.frequencyPenalty !== 0) {
      for (const [token, count] of this.outputCounts) {
        const value = logits[token];
        if (value === undefined) continue;
        logits[token] = value - params.presencePenalty - params.frequencyPenalty * count;
      }
    }
    return logits;
  }

  /**
   * Tokens allowed by top-k, then top-p, then min-p, best first, with their unnormalised
   * probabilities. Only tokens at or above a floor weight are sorted: the floor starts at min-p
   * (or 1e-3 of the best) and drops until the kept set provably lies above it — the k best
   * tokens, or the nucleus' mass — so a 50k vocabulary costs a scan, not a sort.
   */
  private candidates(logits: Float32Array | Float64Array): { token: number; weight: number }[] {
    const { temperature, topK, topP, minP } = this.params;
    let max = -Infinity;
    for (const value of logits) if (value > max) max = value;
    const weights = new Float64Array(logits.length);
    let total = 0;
    let index = 0;
    for (const value of logits) {
      const weight = Math.exp((value - max) / temperature);
      weights[index] = weight;
      total += weight;
      index += 1;
    }
    let floor = minP > 0 ? minP : 1e-3;
    for (;;) {
      let count = 0;
      let mass = 0;
      for (const weight of weights) {
        if (weight > 0 && weight >= floor) {
          count += 1;
          mass += weight;
        }
      }
      const holdsTopK = topK === 0 || count >= topK;
      // Without top-k, the nucleus is decided against the whole vocabulary's mass; with min-p,
      // tokens below the floor would be dropped at the end anyway.
      const holdsTopP = topK > 0 || topP >= 1 || mass >= topP * total || minP > 0;
      if ((holdsTopK && holdsTopP) || floor === 0) break;
      floor = floor < 1e-300 ? 0 : floor / 1000;
    }
    const sorted: { token: number; weight: number }[] = [];
    index = 0;
    for (const weight of weights) {
      if (weight > 0 && weight >= floor) sorted.push({ token: index, weight });
      index += 1;
    }
    sorted.sort((a, b) => b.weight - a.weight || a.token - b.token);
    let kept = topK > 0 ? sorted.slice(0, topK) : sorted;
    if (topP < 1) {
      const mass = topK > 0 ? kept.reduce((sum, candidate) => sum + candidate.weight, 0) : total;
      let cumulative = 0;
      let end = 0;
      while (end < kept.length && cumulative < topP * mass) {
        cumulative += kept[end]?.weight ?? 0;
        end += 1;
      }
      kept = kept.slice(0, Math.max(1, end));
    }
    if (minP > 0) {
      // The most likely token has weight 1 (max-subtracted), so the cut is simply minP.
      kept = kept.filter((candidate) => candidate.weight >= minP);
    }
    return kept;
  }
}

/** The first index of the largest value. An indexed loop: this scans 50k logits per token. */
function argmax(values: Float32Array | Float64Array): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let index = 0; index < values.length; index += 1) {
    const value = values[index] ?? -Infinity;
    if (value > bestValue) {
      bestValue = value;
      best = index;
    }
  }
  return best;
}

/**
 * Draws from softmax(logits / temperature) over the whole vocabulary without allocating: the
 * walk visits tokens in id order, as the truncating path visits its candidates.
 */
function sampleWhole(
  logits: Float32Array | Float64Array,
  temperature: number,
  uniform: number,
): number {
  let max = -Infinity;
  for (const value of logits) if (value > max) max = value;
  let total = 0;
  for (const value of logits) total += Math.exp((value - max) / temperature);
  let threshold = uniform * total;
  let token = 0;
  let lastPositive = 0;
  for (const value of logits) {
    const weight = Math.exp((value - max) / temperature);
    if (weight > 0) {
      threshold -= weight;
      lastPositive = token;
      if (threshold < 0) return token;
    }
    token += 1;
  }
  // Rounding can leave a sliver of `threshold`: the last possible token takes it.
  return lastPositive;
}

function logSumExp(logits: Float32Array): number {
  let max = -Infinity;
  for (const value of logits) if (value > max) max = value;
  let sum = 0;
  for (const value of logits) sum += Math.exp(value - max);
  return max + Math.log(sum);
}

/** log-softmax of the raw logits at `token`, and the top alternatives when asked. */
function describe(
  logits: Float32Array,
  token: number,
  topLogprobs: number | undefined,
  logNormaliser: number,
): { logprob: number; top: TokenLogprob[] | undefined } {
  const logprob = (logits[token] ?? -Infinity) - logNormaliser;
  if (topLogprobs === undefined) return { logprob, top: undefined };
  // The best `topLogprobs` ids, best first, ties to the lower id: a short insertion list instead
  // of sorting the whole vocabulary.
  const best: number[] = [];
  let index = 0;
  for (const value of logits) {
    if (best.length < topLogprobs || value > (logits[best[best.length - 1] ?? 0] ?? -Infinity)) {
      let at = best.length;
      while (at > 0 && value > (logits[best[at - 1] ?? 0] ?? -Infinity)) at -= 1;
      best.splice(at, 0, index);
      if (best.length > topLogprobs) best.pop();
    }
    index += 1;
  }
  return {
    logprob,
    top: best.map((alternative) => ({
      token: alternative,
      logprob: (logits[alternative] ?? 0) - logNormaliser,
    })),
  };
}
