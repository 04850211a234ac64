import { describe, expect, it } from 'vitest';
import { counterUniform } from '#engine';

describe('counter-based uniforms', () => {
  it('are a pure function of (seed, choice, index)', () => {
    const first = Array.from({ length: 50 }, (_unused, index) => counterUniform(42, 0, index));
    const again = Array.from({ length: 50 }, (_unused, index) => counterUniform(42, 0, index));
    expect(again).toEqual(first);
    expect(counterUniform(42, 1, 0)).not.toBe(counterUniform(42, 0, 0));
    expect(counterUniform(43, 0, 0)).not.toBe(counterUniform(42, 0, 0));
    expect(counterUniform(42 + 2 ** 32, 0, 0)).not.toBe(counterUniform(42, 0, 0));
    expect(counterUniform(-1, 0, 0)).not.toBe(counterUniform(1, 0, 0));
  });

  it('look uniform: mean, variance and a chi-square over 20 bins', () => {
    const samples = Array.from({ length: 100_000 }, (_unused, index) =>
      counterUniform(7, 0, index),
    );
    const mean = samples.reduce((sum, value) => sum + value, 0) / samples.length;
    const variance = samples.reduce((sum, value) => sum + (value - mean) ** 2, 0) / samples.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.005);
    expect(Math.abs(variance - 1 / 12)).toBeLessThan(0.002);
    expect(Math.min(...samples)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...samples)).toBeLessThan(1);
    const bins = new Array<number>(20).fill(0);
    for (const value of samples)
      bins[Math.floor(value * 20)] = (bins[Math.floor(value * 20)] ?? 0) + 1;
    const expected = samples.length / 20;
    const chiSquare = bins.reduce((sum, count) => sum + (count - expected) ** 2 / expected, 0);
    // 19 degrees of freedom: the 99.9th percentile is 43.8.
    expect(chiSquare).toBeLessThan(43.8);
  });

  it('rejects seeds that are not safe integers', () => {
    expect(() => counterUniform(1.5, 0, 0)).toThrow(/safe integer/);
  });
});
