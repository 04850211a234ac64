import type { TokenizerKind } from '../config.js';

/**
 * Turns generated ids into text one id at a time. A chunk never ends inside a UTF-8 character:
 * bytes of an incomplete character wait for the ids that complete it.
 */
export interface DecodeStream {
  /** Text that became complete with this id ('' while a character is still incomplete). */
  push(id: number): string;
  /** Whatever is still held back (an incomplete character decodes to U+FFFD); resets the stream. */
  flush(): string;
}

/** Text <-> token ids for one model. Special tokens such as end of text never decode to text. */
export interface Tokenizer {
  readonly kind: TokenizerKind;
  /** Number of ids the tokenizer defines (the model's vocabulary may be padded beyond it). */
  readonly vocabSize: number;
  readonly eosTokenId: number;
  encode(text: string): number[];
  /** The ids of `encode`, compactly: documents run to millions of tokens. */
  encodeIds(text: string): Int32Array;
  decode(ids: readonly number[]): string;
  createDecodeStream(): DecodeStream;
}

const REPLACEMENT_CHARACTER = '\uFFFD';

/**
 * A decode stream for any tokenizer whose `decode` renders an incomplete UTF-8 sequence as
 * U+FFFD (byte-level BPE does). It re-decodes a short window of recent ids and emits the new
 * suffix only once it no longer ends in U+FFFD; decoding the window, not single ids, keeps
 * decoders that look at neighbouring tokens (spaces, prefixes) correct. Ids before the window are
 * dropped, so memory stays bounded on endless streams.
 */
export class WindowedDecodeStream implements DecodeStream {
  private ids: number[] = [];
  /** Start of the window that is re-decoded; ids before it are already emitted and dropped. */
  private prefixEnd = 0;

  constructor(private readonly decode: (ids: readonly number[]) => string) {}

  push(id: number): string {
    this.ids.push(id);
    const emitted = this.decode(this.ids.slice(0, this.prefixEnd));
    const text = this.decode(this.ids);
    if (text.length <= emitted.length || text.endsWith(REPLACEMENT_CHARACTER)) return '';
    this.ids = this.ids.slice(this.prefixEnd);
    this.prefixEnd = this.ids.length;
    return text.slice(emitted.length);
  }

  flush(): string {
    const rest = this.decode(this.ids).slice(this.decode(this.ids.slice(0, this.prefixEnd)).length);
    this.ids = [];
    this.prefixEnd = 0;
    return rest;
  }
}
