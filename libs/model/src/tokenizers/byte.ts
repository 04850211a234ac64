import type { DecodeStream, Tokenizer } from './tokenizer.js';

/** Byte-level vocabulary: ids 0-255 are the UTF-8 bytes of the text, 256 is end of text. */
export const BYTE_EOS_TOKEN_ID = 256;

function checkByteId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > BYTE_EOS_TOKEN_ID) {
    throw new RangeError(`byte tokenizer: id ${id} is outside [0, ${BYTE_EOS_TOKEN_ID}]`);
  }
}

// ignoreBOM keeps a leading U+FEFF as text instead of silently dropping it.
const utf8Options = { ignoreBOM: true } as const;

export class ByteTokenizer implements Tokenizer {
  readonly kind = 'byte';
  readonly vocabSize = BYTE_EOS_TOKEN_ID + 1;
  readonly eosTokenId = BYTE_EOS_TOKEN_ID;

  encode(text: string): number[] {
    return Array.from(new TextEncoder().encode(text));
  }

  encodeIds(text: string): Int32Array {
    // Typed array to typed array: no intermediate number array, however long the text.
    return new Int32Array(new TextEncoder().encode(text));
  }

  decode(ids: readonly number[]): string {
    ids.forEach(checkByteId);
    const bytes = Uint8Array.from(ids.filter((id) => id !== BYTE_EOS_TOKEN_ID));
    return new TextDecoder('utf-8', utf8Options).decode(bytes);
  }

  createDecodeStream(): DecodeStream {
    let decoder = new TextDecoder('utf-8', utf8Options);
    return {
      push(id: number): string {
        checkByteId(id);
        if (id === BYTE_EOS_TOKEN_ID) return '';
        return decoder.decode(Uint8Array.of(id), { stream: true });
      },
      flush(): string {
        const rest = decoder.decode();
        decoder = new TextDecoder('utf-8', utf8Options);
        return rest;
      },
    };
  }
}
