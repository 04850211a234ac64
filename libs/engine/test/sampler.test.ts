import { describe, expect, it } from 'vitest';
import { DEFAULT_SAMPLING, TokenSampler, type SamplingParams } from '#engine';

const base: SamplingParams = { ...DEFAULT_SAMPLING, seed: 1234 };

/** Logits whose softmax is exactly `probabilities`. */
const logitsOf = (probabilities: number[]): Float32Array =>
  Float32Array.from(probabilities.map((p) => Math.log(p)));

function frequencies(
  params: Partial<SamplingParams>,
  logits: Float32Array,
  draws: number,
): number[] {
  const sampler = new TokenSampler({ ...base, ...params }, 0, []);
  const counts = new Array<number>(logits.length).fill(0);
  for (let draw = 0; draw < draws; draw += 1) {
    // Penalties are off, so every draw sees the same distribution with a fresh uniform.
    const { token } = sampler.next(logits);
    counts[token] = (counts[token] ?? 0) + 1;
  }
  return counts.map((count) => count / draws);
}

describe('TokenSampler', () => {
  const probabilities = [0.5, 0.3, 0.15, 0.05];
  const logits = logitsOf(probabilities);

  it('is greedy at temperature 0', () => {
    const sampler = new TokenSampler({ ...base, temperature: 0 }, 0, []);
    expect([0, 1, 2].map(() => sampler.next(Float32Array.of(0.1, 2.5, -1, 2.4)).token)).toEqual([
      1, 1, 1,
    ]);
  });

  it('samples in proportion to softmax(logits / temperature)', () => {
    const draws = 20_000;
    expect(frequencies({}, logits, draws).map((f) => f.toFixed(2))).toEqual(
      probabilities.map((p) => p.toFixed(2)),
    );
    // Temperature 2 flattens: p_i ∝ p_i^(1/2).
    const flat = probabilities.map((p) => Math.sqrt(p));
    const total = flat.reduce((sum, p) => sum + p, 0);
    const observed = frequencies({ temperature: 2 }, logits, draws);
    flat.forEach((p, token) => {
      expect(Math.abs((observed[token] ?? 0) - p / total)).toBeLessThan(0.015);
    });
  });

  it('is reproducible for a seed and differs across seeds and choices', () => {
    const run = (seed: number, choice: number): number[] => {
      const sampler = new TokenSampler({ ...base, seed }, choice, []);
      return Array.from({ length: 40 }, () => sampler.next(logits).token);
    };
    expect(run(7, 0)).toEqual(run(7, 0));
    expect(run(7, 0)).not.toEqual(run(8, 0));
    expect(run(7, 0)).not.toEqual(run(7, 1));
  });

  it('continues identically after replaying accepted tokens (resume)', () => {
    const params = { ...base, presencePenalty: 0.5, frequencyPenalty: 0.3, seed: 99 };
    const uninterrupted = new TokenSampler(params, 0, [1, 2]);
    const full = Array.from({ length: 30 }, () => uninterrupted.next(logits).token);
    const resumed = new TokenSampler(params, 0, [1, 2]);
    for (const token of full.slice(0, 12)) resumed.accept(token);
    expect(Array.from({ length: 18 }, () => resumed.next(logits).token)).toEqual(full.slice(12));
  });

  it('top_k keeps only the k most likely tokens, in proportion', () => {
    const observed = frequencies({ topK: 2 }, logits, 10_000);
    expect(observed[2]).toBe(0);
    expect(observed[3]).toBe(0);
    expect(Math.abs((observed[0] ?? 0) - 0.5 / 0.8)).toBeLessThan(0.02);
  });

  it('top_p keeps the smallest set reaching the mass', () => {
    expect(frequencies({ topP: 0.8 }, logits, 5000).map((f) => f > 0)).toEqual([
      true,
      true,
      false,
      false,
    ]);
    expect(frequencies({ topP: 0.81 }, logits, 5000).map((f) => f > 0)).toEqual([
      true,
      true,
      true,
      false,
    ]);
    // Never empty: a tiny top_p still leaves the most likely token.
    expect(frequencies({ topP: 0.01 }, logits, 200)[0]).toBe(1);
  });

  it('min_p drops tokens below min_p times the best probability', () => {
    // Cut at 0.25 * 0.5 = 0.125: token 3 (0.05) goes, token 2 (0.15) stays.
    expect(frequencies({ minP: 0.25 }, logits, 5000).map((f) => f > 0)).toEqual([
      true,
      true,
      true,
      false,
    ]);
  });

  it('logit_bias shifts logits (and -100 bans a token)', () => {
    const greedy = (bias: [number, number][]): number =>
      new TokenSampler({ ...base, temperature: 0, logitBias: new Map(bias) }, 0, []).next(logits)
        .token;
    expect(greedy([])).toBe(0);
    expect(greedy([[3, 5]])).toBe(3);
    expect(frequencies({ logitBias: new Map([[0, -100]]) }, logits, 2000)[0]).toBe(0);
  });

  it('presence penalty lowers each generated token once', () => {
    // Logits 1.0 vs 0.8: after token 0 a penalty of 0.3 makes token 1 the best (0.7 < 0.8);
    // once both appeared, both carry the same single penalty and token 0 wins again for good.
    const sampler = new TokenSampler({ ...base, temperature: 0, presencePenalty: 0.3 }, 0, []);
    const tokens = Array.from({ length: 4 }, () => sampler.next(Float32Array.of(1, 0.8)).token);
    expect(tokens).toEqual([0, 1, 0, 0]);
  });

  it('frequency penalty grows with each repetition', () => {
    // Logits 1.0 vs 0.55: with 0.2 per occurrence token 0 wins until it has appeared 3 times.
    const sampler = new TokenSampler({ ...base, temperature: 0, frequencyPenalty: 0.2 }, 0, []);
    const tokens = Array.from({ length: 4 }, () => sampler.next(Float32Array.of(1, 0.55)).token);
    expect(tokens).toEqual([0, 0, 0, 1]);
  });

  it('repetition penalty divides positive and multiplies negative logits of seen tokens', () => {
    // Prompt holds tokens 0 and 2: 2.0 / 2 = 1.0 < 1.5, and -0.2 * 2 = -0.4 < -0.3.
    const sampler = new TokenSampler({ ...base, temperature: 0, repetitionPenalty: 2 }, 0, [0, 2]);
    expect(sampler.next(Float32Array.of(2, 1.5, -0.2, -0.3)).token).toBe(1);
    const negatives = new TokenSampler({ ...base, temperature: 0, repetitionPenalty: 2 }, 0, [2]);
    expect(negatives.next(Float32Array.of(-5, -5, -0.2, -0.3)).token).toBe(3);
  });

  it("reports the model's log-probabilities and the top alternatives", () => {
    const raw = Float32Array.of(0.5, 2, -1, 1);
    const normaliser = Math.log(Array.from(raw).reduce((sum, l) => sum + Math.exp(l), 0));
    const sampler = new TokenSampler(
      { ...base, temperature: 0, topLogprobs: 2, presencePenalty: 2 },
      0,
      [],
    );
    const first = sampler.next(raw);
    expect(first.token).toBe(1);
    expect(first.logprob).toBeCloseTo(2 - normaliser, 6);
    expect(first.top).toEqual([
      { token: 1, logprob: expect.closeTo(2 - normaliser, 6) as number },
      { token: 3, logprob: expect.closeTo(1 - normaliser, 6) as number },
    ]);
    // The penalty changes the choice but not the reported model log-probabilities.
    const second = sampler.next(raw);
    expect(second.token).toBe(3);
    expect(second.logprob).toBeCloseTo(1 - normaliser, 6);
    expect(new TokenSampler(base, 0, []).next(raw).top).toBeUndefined();
  });
});
