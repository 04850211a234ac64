import { describe, expect, it } from 'vitest';
import { TokenList } from '../src/token-list.js';

describe('TokenList', () => {
  it('holds the input, an optional first id, and what is pushed after, like an array would', () => {
    const reference = [7, 1, 2, 3];
    const list = new TokenList(Int32Array.of(1, 2, 3), 7);
    expect(list.length).toBe(4);
    // Past the initial capacity, several times: the growth keeps every id.
    for (let id = 100; id < 150; id += 1) {
      list.push(id);
      reference.push(id);
    }
    expect(list.length).toBe(reference.length);
    expect([...list]).toEqual(reference);
    expect([...list.slice(2, 9)]).toEqual(reference.slice(2, 9));
    // A slice never reaches into unused capacity.
    expect([...list.slice(50, 200)]).toEqual(reference.slice(50, 200));
  });

  it('uses the given ids as they are when there is no first id', () => {
    const list = new TokenList(Int32Array.of(4, 5));
    expect([...list]).toEqual([4, 5]);
    list.push(6);
    expect([...list]).toEqual([4, 5, 6]);
  });
});
