import { readFileSync } from 'node:fs';

/** Debian's `wamerican` word list. */
const WORD_LIST = '/usr/share/dict/american-english';

let dictionary: Set<string> | undefined;

function words(): Set<string> {
  if (dictionary === undefined) {
    let text: string;
    try {
      text = readFileSync(WORD_LIST, 'utf8');
    } catch (error) {
      throw new Error(
        `no word list at ${WORD_LIST}: run 'apt-get install -y wamerican' (as root)`,
        {
          cause: error,
        },
      );
    }
    dictionary = new Set(text.split('\n').map((word) => word.toLowerCase()));
  }
  return dictionary;
}

/** The words of `text` (letter runs) and the share of them found in the English word list. */
export function englishWordShare(text: string): { words: string[]; share: number } {
  const found = text.match(/[A-Za-z]+/g) ?? [];
  const known = found.filter((word) => words().has(word.toLowerCase())).length;
  return { words: found, share: found.length === 0 ? 0 : known / found.length };
}
