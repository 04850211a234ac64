import { describe, expect, it } from 'vitest';
import { StopStringFilter } from '#engine';

function run(
  stops: string[],
  pieces: string[],
): { emitted: string[]; text: string; stop?: string } {
  const filter = new StopStringFilter(stops);
  const emitted = pieces.map((piece) => filter.push(piece));
  emitted.push(filter.flush());
  const result = { emitted, text: emitted.join('') };
  return filter.stoppedBy === undefined ? result : { ...result, stop: filter.stoppedBy };
}

describe('StopStringFilter', () => {
  it('passes text through when no stop string is near', () => {
    expect(run(['###'], ['Hello', ', ', 'world'])).toEqual({
      emitted: ['Hello', ', ', 'world', ''],
      text: 'Hello, world',
    });
  });

  it('cuts before a stop string inside one piece and drops the rest', () => {
    expect(run(['\n\n'], ['one\n\ntwo', 'three'])).toEqual({
      emitted: ['one', '', ''],
      text: 'one',
      stop: '\n\n',
    });
  });

  it('catches a stop string split across tokens without ever emitting part of it', () => {
    const { emitted, text, stop } = run(['END'], ['The E', 'N', 'D of it']);
    expect(text).toBe('The ');
    expect(stop).toBe('END');
    expect(emitted.some((piece) => piece.includes('E'))).toBe(false);
  });

  it('releases held text when the possible stop turns out not to be one', () => {
    expect(run(['END'], ['The E', 'N', 'ormous'])).toEqual({
      emitted: ['The ', '', 'ENormous', ''],
      text: 'The ENormous',
    });
    // Held at the very end of generation: flushed as text.
    expect(run(['END'], ['The EN'])).toEqual({ emitted: ['The ', 'EN'], text: 'The EN' });
  });

  it('stops at the earliest of several stop strings', () => {
    expect(run(['b', 'cd'], ['a', 'cdb'])).toMatchObject({ text: 'a', stop: 'cd' });
    expect(run(['xyz', 'y'], ['axyz'])).toMatchObject({ text: 'a', stop: 'xyz' });
    expect(run(['yz', 'x'], ['ayzx'])).toMatchObject({ text: 'a', stop: 'yz' });
  });

  it('handles overlapping prefixes ("aab" after "aa…")', () => {
    expect(run(['aab'], ['a', 'a', 'a', 'b', 'c'])).toMatchObject({ text: 'a', stop: 'aab' });
  });

  it('rejects an empty stop string', () => {
    expect(() => new StopStringFilter([''])).toThrow(/must not be empty/);
  });
});
