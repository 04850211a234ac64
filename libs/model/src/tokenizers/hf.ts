import * as tokenizersJs from '@huggingface/tokenizers';
import type { DecodeStream, Tokenizer } from './tokenizer.js';
import { WindowedDecodeStream } from './tokenizer.js';

/**
 * The part of `@huggingface/tokenizers`' Tokenizer class used here. The package's own .d.ts files
 * import each other without file extensions, which TypeScript's `nodenext` resolution rejects, so
 * the class arrives untyped; this interface restates its documented signatures.
 */
interface TokenizersJsTokenizer {
  encode(text: string): { ids: number[] };
  decode(ids: number[], options: { skip_special_tokens: boolean }): string;
  get_vocab(withAddedTokens: boolean): Map<string, number>;
  token_to_id(token: string): number | undefined;
}
type TokenizersJsConstructor = new (
  tokenizerJson: object,
  tokenizerConfig: { clean_up_tokenization_spaces: boolean },
) => TokenizersJsTokenizer;
const TokenizersJs = (tokenizersJs as unknown as { Tokenizer: TokenizersJsConstructor }).Tokenizer;

/** GPT-NeoX (Pythia) and GPT-2 name their end-of-text token this way. */
export const DEFAULT_EOS_TOKEN = '<|endoftext|>';

export interface HfTokenizerOptions {
  /** Content of the end-of-text token. @defaultValue '<|endoftext|>' */
  readonly eosToken?: string;
}

/**
 * A Hugging Face `tokenizer.json` (normalizer, pre-tokenizer, BPE model, decoder and added tokens),
 * run by `@huggingface/tokenizers` entirely in-process: nothing is fetched.
 */
export class HfTokenizer implements Tokenizer {
  readonly kind = 'hf';
  readonly vocabSize: number;
  readonly eosTokenId: number;
  private readonly model: TokenizersJsTokenizer;

  /** @param tokenizerJson the parsed contents of `tokenizer.json` */
  constructor(tokenizerJson: unknown, options: HfTokenizerOptions = {}) {
    if (typeof tokenizerJson !== 'object' || tokenizerJson === null) {
      throw new Error('tokenizer.json: expected a JSON object');
    }
    // No "clean up tokenization spaces": it rewrites " ." to "." on decode, which breaks
    // round trips and streaming; the Rust tokenizers library does not do it either.
    this.model = new TokenizersJs(tokenizerJson, { clean_up_tokenization_spaces: false });
    const vocabulary = this.model.get_vocab(true);
    this.vocabSize = Math.max(-1, ...vocabulary.values()) + 1;
    const eosToken = options.eosToken ?? DEFAULT_EOS_TOKEN;
    const eosTokenId = this.model.token_to_id(eosToken);
    if (eosTokenId === undefined) {
      throw new Error(`tokenizer.json: no token "${eosToken}" to use as end of text`);
    }
    this.eosTokenId = eosTokenId;
  }

  encode(text: string): number[] {
    return this.model.encode(text).ids;
  }

  encodeIds(text: string): Int32Array {
    return Int32Array.from(this.encode(text));
  }

  /** Special tokens are skipped; ids without a token (padding rows of the model) decode to ''. */
  decode(ids: readonly number[]): string {
    // tokenizers.js refuses an empty list; nothing decodes to nothing.
    if (ids.length === 0) return '';
    return this.model.decode([...ids], { skip_special_tokens: true });
  }

  createDecodeStream(): DecodeStream {
    return new WindowedDecodeStream((ids) => this.decode(ids));
  }
}
