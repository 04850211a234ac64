import { describe, expect, it } from 'vitest';
import { summarizeScore } from '#engine';

describe('summarizeScore', () => {
  it('turns log-probs into NLL, perplexity and windows', () => {
    const logprobs = [Math.log(0.5), Math.log(0.25), Math.log(0.5), Math.log(0.125), Math.log(1)];
    const summary = summarizeScore(logprobs, 2);
    // NLL = ln 2 + ln 4 + ln 2 + ln 8 + 0 = 7 ln 2; perplexity = 2^(7/5).
    expect(summary.tokens).toBe(5);
    expect(summary.totalNll).toBeCloseTo(7 * Math.LN2, 12);
    expect(summary.perplexity).toBeCloseTo(2 ** (7 / 5), 12);
    expect(summary.windows.map((window) => [window.start, window.end])).toEqual([
      [0, 2],
      [2, 4],
      [4, 5],
    ]);
    expect(summary.windows[0]?.perplexity).toBeCloseTo(Math.sqrt(8), 12);
    expect(summary.windows[2]?.perplexity).toBeCloseTo(1, 12);
  });

  it('has perplexity 1 and no windows for an empty text', () => {
    expect(summarizeScore([], 4)).toEqual({ tokens: 0, totalNll: 0, perplexity: 1, windows: [] });
  });
});
