import { createHash } from 'node:crypto';
import type { ModelConfig } from '#model';
import type { TokenList } from './token-list.js';

/** A shareable prompt prefix: its length in tokens and the chained hash of its tokens. */
export interface PrefixHash {
  tokens: number;
  hash: string;
}

/**
 * Prefixes worth sharing are prompts' common beginnings (system prompts, few-shot examples), not
 * whole documents: only the first this many blocks are hashed and cached, so a long document
 * neither floods the cache with its states nor has its prefill cut into block-sized chunks.
 * @defaultValue 32 blocks (8,192 tokens at the default prefix block of 256 tokens)
 */
const MAX_PREFIX_BLOCKS = 32;

/**
 * Chained hashes of the token prefixes at multiples of `block` tokens, strictly below the last
 * token (a cached state must leave at least one token to feed), for the first
 * MAX_PREFIX_BLOCKS blocks. The model's shape is part of the hash, so states never cross models
 * with different tokenizations of the same ids.
 */
export function prefixHashes(config: ModelConfig, tokens: TokenList, block: number): PrefixHash[] {
  if (block <= 0) return [];
  const result: PrefixHash[] = [];
  let previous = createHash('sha256').update(JSON.stringify(config)).digest();
  const last = Math.min(tokens.length - 1, block * MAX_PREFIX_BLOCKS);
  for (let end = block; end <= last; end += block) {
    const digest = createHash('sha256')
      .update(previous)
      .update(tokens.slice(end - block, end))
      .digest();
    previous = digest;
    result.push({ tokens: end, hash: digest.toString('hex') });
  }
  return result;
}
