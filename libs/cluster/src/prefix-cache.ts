import type { Redis } from 'ioredis';
import type { RedisKeys } from '#contracts';

/**
 * The prefix-state cache shared by all workers: the recurrent state after a token prefix, keyed by
 * (model, chained hash of the prefix's tokens). A fixed-size state stands for a prefix of any
 * length, so a hit skips that whole prefix. Bounded in bytes with least-recently-used eviction;
 * hits, misses, stored bytes and evictions are counted in Redis for all workers together.
 *
 * Eviction runs inside one Lua script, so concurrent workers never over-count or double-evict.
 * (It touches keys it finds in the index: on Redis Cluster all keys must share one hash slot,
 * e.g. a QUEUE_PREFIX with a hash tag such as `{dijiang}`.)
 */
const STORE_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[2], KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], KEYS[1])
local bytes = redis.call('HINCRBY', KEYS[3], 'bytes', string.len(ARGV[1]))
local limit = tonumber(ARGV[3])
while bytes > limit do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not oldest then break end
  local size = redis.call('STRLEN', oldest)
  redis.call('DEL', oldest)
  redis.call('ZREM', KEYS[2], oldest)
  bytes = redis.call('HINCRBY', KEYS[3], 'bytes', -size)
  redis.call('HINCRBY', KEYS[3], 'evictions', 1)
end
return 1
`;

export interface PrefixHit {
  tokens: number;
  state: Buffer;
}

export interface PrefixCacheStats {
  hits: number;
  misses: number;
  bytes: number;
  evictions: number;
}

export class PrefixCache {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly modelId: string,
    /** @defaultValue 256 MiB (PREFIX_CACHE_MAX_BYTES) */
    private readonly maxBytes: number,
  ) {}

  /** The longest cached prefix among `prefixes` (any order), counting a hit or a miss. */
  async lookup(
    prefixes: readonly { tokens: number; hash: string }[],
  ): Promise<PrefixHit | undefined> {
    if (prefixes.length === 0) return undefined;
    const longestFirst = [...prefixes].sort((a, b) => b.tokens - a.tokens);
    const exists = await this.redis
      .pipeline(
        longestFirst.map((prefix) => ['exists', this.keys.prefixState(this.modelId, prefix.hash)]),
      )
      .exec();
    for (const [index, prefix] of longestFirst.entries()) {
      if (exists?.[index]?.[1] !== 1) continue;
      const key = this.keys.prefixState(this.modelId, prefix.hash);
      const state = await this.redis.getBuffer(key);
      if (state === null) continue; // evicted in between
      await this.redis
        .multi()
        .zadd(this.keys.prefixIndex, Date.now(), key)
        .hincrby(this.keys.prefixStats, 'hits', 1)
        .exec();
      return { tokens: prefix.tokens, state };
    }
    await this.redis.hincrby(this.keys.prefixStats, 'misses', 1);
    return undefined;
  }

  /** Stores a state unless already cached; evicts least-recently-used entries over the bound. */
  async store(hash: string, state: Buffer): Promise<void> {
    if (state.byteLength > this.maxBytes) return;
    await this.redis.eval(
      STORE_SCRIPT,
      3,
      this.keys.prefixState(this.modelId, hash),
      this.keys.prefixIndex,
      this.keys.prefixStats,
      state,
      Date.now(),
      this.maxBytes,
    );
  }

  async stats(): Promise<PrefixCacheStats> {
    const raw = await this.redis.hgetall(this.keys.prefixStats);
    const read = (field: string): number => Number(raw[field] ?? 0);
    return {
      hits: read('hits'),
      misses: read('misses'),
      bytes: read('bytes'),
      evictions: read('evictions'),
    };
  }
}
