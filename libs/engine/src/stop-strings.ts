/**
 * Cuts generated text at the first stop string, which is never returned, even when it arrives
 * split across several tokens. Text that could still turn out to be the start of a stop string is
 * held back until the next piece decides it.
 */
export class StopStringFilter {
  private held = '';
  private stoppedAt: string | undefined;

  constructor(private readonly stops: readonly string[]) {
    if (stops.some((stop) => stop.length === 0)) throw new Error('stop strings must not be empty');
  }

  /** The stop string that ended the text, once one has. */
  get stoppedBy(): string | undefined {
    return this.stoppedAt;
  }

  /** Adds decoded text; returns what is now safe to emit. After a stop, returns ''. */
  push(text: string): string {
    if (this.stoppedAt !== undefined) return '';
    const buffer = this.held + text;
    let cut = -1;
    for (const stop of this.stops) {
      const found = buffer.indexOf(stop);
      if (found !== -1 && (cut === -1 || found < cut)) {
        cut = found;
        this.stoppedAt = stop;
      }
    }
    if (cut !== -1) {
      this.held = '';
      return buffer.slice(0, cut);
    }
    const keep = this.longestPendingSuffix(buffer);
    this.held = buffer.slice(buffer.length - keep);
    return buffer.slice(0, buffer.length - keep);
  }

  /** At the end of generation: whatever was held back is plain text after all. */
  flush(): string {
    const rest = this.stoppedAt === undefined ? this.held : '';
    this.held = '';
    return rest;
  }

  /** Length of the longest suffix of `buffer` that is a proper prefix of some stop string. */
  private longestPendingSuffix(buffer: string): number {
    let longest = 0;
    for (const stop of this.stops) {
      for (let length = Math.min(stop.length - 1, buffer.length); length > longest; length -= 1) {
        if (buffer.endsWith(stop.slice(0, length))) {
          longest = length;
          break;
        }
      }
    }
    return longest;
  }
}
