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

  /** Picks the next token from `logits` (one row of the vocabulary) and records it. */
  next(logits: Float32Array): SampledToken {
    const chosen = this.choose(logits);
    this.accept(chosen);
    return { token: chosen, ...describe(logits, chosen, this.params.topLogprobs) };
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
    const logits = Float64Array.from(raw);
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
    if (params.temperature === 0) return argmax(logits);

    const candidates = this.candidates(logits);
    const uniform = counterUniform(params.seed, this.choice, this.generated);
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

  /** Tokens allowed by top-k/top-p/min-p with their unnormalised probabilities. */
  private candidates(logits: Float64Array): { token: number; weight: number }[] {
    const { temperature, topK, topP, minP } = this.params;
    let max = -Infinity;
    for (const value of logits) if (value > max) max = value;
    const all: { token: number; weight: number }[] = [];
    for (let token = 0; token < logits.length; token += 1) {
      const weight = Math.exp(((logits[token] ?? -Infinity) - max) / temperature);
      if (weight > 0) all.push({ token, weight });
    }
    const truncating = topK > 0 || topP < 1 || minP > 0;
    if (!truncating) return all;

    all.sort((a, b) => b.weight - a.weight || a.token - b.token);
    let kept = topK > 0 ? all.slice(0, topK) : all;
    if (topP < 1) {
      const total = kept.reduce((sum, candidate) => sum + candidate.weight, 0);
      let cumulative = 0;
      let end = 0;
      while (end < kept.length && cumulative < topP * total) {
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

function argmax(values: Float64Array): number {
  let best = 0;
  let bestValue = -Infinity;
  values.forEach((value, index) => {
    if (value > bestValue) {
      bestValue = value;
      best = index;
    }
  });
  return best;
}

/** log-softmax of the raw logits at `token`, and the top alternatives when asked. */
function describe(
  logits: Float32Array,
  token: number,
  topLogprobs: number | undefined,
): { logprob: number; top: TokenLogprob[] | undefined } {
  let max = -Infinity;
  for (const value of logits) if (value > max) max = value;
  let sum = 0;
  for (const value of logits) sum += Math.exp(value - max);
  const logNormaliser = max + Math.log(sum);
  const logprob = (logits[token] ?? -Infinity) - logNormaliser;
  if (topLogprobs === undefined) return { logprob, top: undefined };
  const top: TokenLogprob[] = [];
  if (topLogprobs > 0) {
    const order = Array.from(logits.keys()).sort(
      (a, b) => (logits[b] ?? 0) - (logits[a] ?? 0) || a - b,
    );
    for (const alternative of order.slice(0, topLogprobs)) {
      top.push({ token: alternative, logprob: (logits[alternative] ?? 0) - logNormaliser });
    }
  }
  return { logprob, top };
}
