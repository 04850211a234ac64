/**
 * A sequence's token ids (its input, then the tokens it generates) in an Int32Array that grows by
 * doubling. A document of a million tokens takes 4 MB here, where a JavaScript number array takes
 * 8 MB and several times that while it is built: the engine's memory stays flat in the length.
 */
export class TokenList implements Iterable<number> {
  private ids: Int32Array;
  private count: number;

  /** `first` (when given) then `ids`. */
  constructor(ids: Int32Array, first?: number) {
    if (first === undefined) {
      this.ids = ids;
    } else {
      this.ids = new Int32Array(ids.length + 1);
      this.ids[0] = first;
      this.ids.set(ids, 1);
    }
    this.count = this.ids.length;
  }

  get length(): number {
    return this.count;
  }

  push(id: number): void {
    if (this.count === this.ids.length) {
      const grown = new Int32Array(Math.max(16, this.ids.length * 2));
      grown.set(this.ids);
      this.ids = grown;
    }
    this.ids[this.count] = id;
    this.count += 1;
  }

  /** The id at `index`; throws outside the list. */
  at(index: number): number {
    const id = index < this.count ? this.ids[index] : undefined;
    if (id === undefined) throw new RangeError(`token index ${index} outside 0..${this.count - 1}`);
    return id;
  }

  /** A copy of ids [from, end). */
  slice(from: number, end: number): Int32Array {
    return this.ids.slice(from, Math.min(end, this.count));
  }

  *[Symbol.iterator](): Iterator<number> {
    for (let index = 0; index < this.count; index += 1) yield this.ids[index] ?? 0;
  }
}
