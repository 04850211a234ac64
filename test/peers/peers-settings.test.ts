/** The peers benchmark's command line and its all-decoding window, without running engines. */
import { describe, expect, it } from 'vitest';
import { parsePeersSettings, PRECISIONS } from '../../bench/peers-settings.js';
import { windowTokensPerSecond } from '../../bench/peers-rows.js';

describe('peers benchmark settings', () => {
  it('defaults to both Pythia shapes, the ladder up to 32k, 2 threads, 32 sequences at 2k', () => {
    const settings = parsePeersSettings([]);
    expect(settings.models).toEqual(['pythia-70m', 'pythia-160m']);
    expect(settings.contexts).toEqual([1024, 2048, 8192, 32768]);
    expect(settings.precisions).toEqual(PRECISIONS);
    expect(settings).toMatchObject({
      threads: 2,
      rounds: 3,
      concurrent: 32,
      concurrentContext: 2048,
    });
  });

  it('takes options, and refuses what it cannot run with the option named', () => {
    const settings = parsePeersSettings([
      '--contexts',
      '1024,2048',
      '--precisions',
      'fp32',
      '--rounds',
      '5',
    ]);
    expect(settings.contexts).toEqual([1024, 2048]);
    expect(settings.precisions.map((entry) => entry.label)).toEqual(['fp32']);
    expect(settings.rounds).toBe(5);
    expect(() => parsePeersSettings(['--contexts', '2048,1024'])).toThrow(/must ascend/);
    expect(() => parsePeersSettings(['--models', 'gpt-5'])).toThrow(/gpt-5 is not a preset/);
    expect(() => parsePeersSettings(['--precisions', 'int3'])).toThrow(/no row int3/);
    expect(() => parsePeersSettings(['--rounds', '0'])).toThrow(/--rounds must be an integer >= 1/);
    expect(() => parsePeersSettings(['--context', '1'])).toThrow(/unknown option --context/);
  });
});

describe('windowTokensPerSecond', () => {
  it('counts only the tokens while every sequence decodes', () => {
    // a decodes from 0 to 10 ms, b from 4 to 14 ms: both decode in (4, 10] ms, where each has
    // tokens at 6, 8 and 10 ms: 6 tokens in 6 ms.
    const a = [0, 2, 4, 6, 8, 10];
    const b = [4, 6, 8, 10, 12, 14];
    expect(windowTokensPerSecond([a, b])).toBeCloseTo(6 / 0.006, 6);
    expect(windowTokensPerSecond([a])).toBeCloseTo(5 / 0.01, 6);
  });
});
