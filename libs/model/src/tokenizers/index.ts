import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TokenizerKind } from '../config.js';
import { ByteTokenizer } from './byte.js';
import { HfTokenizer } from './hf.js';
import type { Tokenizer } from './tokenizer.js';

export * from './byte.js';
export * from './hf.js';
export * from './tokenizer.js';

/** File name of a Hugging Face tokenizer inside a model bundle. */
export const TOKENIZER_FILE = 'tokenizer.json';

/** The tokenizer a bundle declares: `byte` needs no file, `hf` reads `tokenizer.json` from the bundle. */
export async function loadTokenizer(kind: TokenizerKind, bundleDir: string): Promise<Tokenizer> {
  switch (kind) {
    case 'byte':
      return new ByteTokenizer();
    case 'hf': {
      const file = join(bundleDir, TOKENIZER_FILE);
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (error) {
        throw new Error(
          `model bundle ${bundleDir}: ${TOKENIZER_FILE} is missing or unreadable (the model uses tokenizer 'hf')`,
          {
            cause: error,
          },
        );
      }
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (error) {
        throw new Error(`model bundle ${bundleDir}: ${TOKENIZER_FILE} is not valid JSON`, {
          cause: error,
        });
      }
      return new HfTokenizer(json);
    }
  }
}
