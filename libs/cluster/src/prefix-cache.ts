import type { RedisClient } from './redis.js';
import type { RedisKeys } from '#contracts';
import { withLuaCommands } from './lua-commands.js';

/**
 * The prefix-state cache shared by all workers: the recurrent state after a token prefix, keyed by
 * (model, chained hash of the prefix's tokens). A fixed-size state stands for a prefix of any
 * length, so a hit skips that whole prefix. Bounded in bytes with least-recently-used eviction;
 * hits, misses, stored bytes and evictions are counted in Redis for all workers together.
 *
 * Sequences that share a prefix compute it once: the first to miss claims the prefix's uncached
 * block boundaries and computes them; the others wait for each boundary's state to be stored and
 * continue from it (batch lines and `n` choices starting with the same long prompt). A claim
 * expires unless its claimant renews it, so the waiters of a claimant that died compute it
 * themselves.
 *
 * Eviction runs inside one Lua script, so concurrent workers never over-count or double-evict.
 * The states it evicts are keys it finds in the index, so they cannot be declared in KEYS in
 * advance; Redis Cluster runs such a script when they live in the declared keys' slot (BullMQ's
 * own scripts rely on the same for job keys), which the hash-tagged QUEUE_PREFIX that Cluster
 * mode requires guarantees. test/cluster/prefix-cache.test.ts evicts on a real cluster.
 */
const STORE_SCRIPT = `
redis.call('DEL', KEYS[4])
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

/**
 * KEYS: the state keys of a prompt's boundaries, shortest first, then their claim keys; ARGV: the
 * number of boundaries, the claimant ('' for none) and the claim TTL in ms. Returns {c, outcome,
 * claimed...}: c = 1-based index of the longest cached boundary (0: none); outcome 1 = claimed
 * (the 1-based indexes of the boundaries the claimant now holds follow), -1 = the next boundary
 * is another claimant's (wait for it), 0 = nothing to claim.
 */
const FIND_AND_CLAIM_SCRIPT = `
local n = tonumber(ARGV[1])
local cached = 0
for i = n, 1, -1 do
  if redis.call('EXISTS', KEYS[i]) == 1 then cached = i break end
end
if ARGV[2] == '' or cached == n then return {cached, 0} end
local function claim(key)
  local holder = redis.call('GET', key)
  if holder and holder ~= ARGV[2] then return false end
  redis.call('SET', key, ARGV[2], 'PX', ARGV[3])
  return true
end
if not claim(KEYS[n + cached + 1]) then return {cached, -1} end
local reply = {cached, 1, cached + 1}
for i = cached + 2, n do
  if claim(KEYS[n + i]) then table.insert(reply, i) end
end
return reply
`;
/** FIND_AND_CLAIM_SCRIPT's outcome when another sequence computes the next boundary. */
const WAIT = -1;

/** Deletes (ARGV[1] = 'del') or renews (ARGV[1] = 'renew', ARGV[3] ms) the claims ARGV[2] holds. */
const CLAIMS_SCRIPT = `
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[2] then
    if ARGV[1] == 'del' then redis.call('DEL', key) else redis.call('PEXPIRE', key, ARGV[3]) end
  end
end
return 0
`;

/** The cache's scripts as custom commands (EVALSHA once Redis has the body). */
interface PrefixCacheCommands {
  /**
   * {@link STORE_SCRIPT}. KEYS: the state, the index, the stats, the claim; ARGV: the state, the
   * time of use (ms), the byte bound. 1 when it stored, 0 when the state was cached already.
   */
  prefixCacheStore(
    stateKey: string,
    indexKey: string,
    statsKey: string,
    claimKey: string,
    state: Buffer,
    usedAtMs: number,
    maxBytes: number,
  ): Promise<number>;
  /** {@link FIND_AND_CLAIM_SCRIPT}; the key count comes first (two per boundary). */
  prefixCacheFindAndClaim(
    numberOfKeys: number,
    ...keysAndArgs: (string | number)[]
  ): Promise<number[]>;
  /** {@link CLAIMS_SCRIPT}; the key count comes first (one per claim). */
  prefixCacheClaims(numberOfKeys: number, ...keysAndArgs: (string | number)[]): Promise<number>;
}

const withPrefixCacheCommands = (redis: RedisClient): RedisClient & PrefixCacheCommands =>
  withLuaCommands<PrefixCacheCommands>(redis, {
    prefixCacheStore: { numberOfKeys: 4, lua: STORE_SCRIPT },
    // Both take as many keys as the prompt has boundaries or the claimant holds claims.
    prefixCacheFindAndClaim: { lua: FIND_AND_CLAIM_SCRIPT },
    prefixCacheClaims: { lua: CLAIMS_SCRIPT },
  });

/**
 * A claim lives this long unless its claimant renews it (each prefill chunk and boundary does).
 * @defaultValue 10 s
 */
const CLAIM_TTL_MS = 10_000;
/** How often a sequence waiting for another's prefix state looks again. @defaultValue 20 ms */
const CLAIM_POLL_MS = 20;

export interface PrefixHit {
  tokens: number;
  hash: string;
  state: Buffer;
}

export interface PrefixCacheStats {
  hits: number;
  misses: number;
  bytes: number;
  evictions: number;
}

export interface PrefixBoundary {
  tokens: number;
  hash: string;
}

/** A sequence that may claim the prefixes it is about to compute. */
export interface PrefixClaimant {
  /** Unique per run of a sequence. */
  id: string;
  /** True when the sequence should stop waiting for another's prefix (cancelled, shutting down). */
  stopWaiting(): boolean;
}

export class PrefixCache {
  /** Prefix hashes each claimant of this process holds and has not stored yet. */
  private readonly claims = new Map<string, Set<string>>();
  private readonly redis: RedisClient & PrefixCacheCommands;

  constructor(
    redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly modelId: string,
    /** @defaultValue 256 MiB (PREFIX_CACHE_MAX_BYTES) */
    private readonly maxBytes: number,
    /** The model's state size: when one state exceeds the bound nothing is cached or claimed. */
    private readonly stateBytes: number,
  ) {
    this.redis = withPrefixCacheCommands(redis);
  }

  /**
   * The longest cached prefix among `prefixes` (any order), counting a hit or a miss. With a
   * claimant, the uncached boundaries beyond it are claimed for the claimant to compute; when
   * another sequence already computes the next one, this waits for its state and looks again.
   */
  async lookup(
    prefixes: readonly PrefixBoundary[],
    claimant?: PrefixClaimant,
  ): Promise<PrefixHit | undefined> {
    if (prefixes.length === 0) return undefined;
    const ascending = [...prefixes].sort((a, b) => a.tokens - b.tokens);
    const claimantId =
      claimant !== undefined && this.stateBytes <= this.maxBytes ? claimant.id : undefined;
    for (;;) {
      const found = await this.findAndClaim(ascending, claimantId);
      if (found.waitFor !== undefined && claimant !== undefined && !claimant.stopWaiting()) {
        await this.awaitClaimed(found.waitFor.hash, claimant);
        continue;
      }
      const longest = found.longest;
      const state =
        longest === undefined
          ? null
          : await this.redis.getBuffer(this.keys.prefixState(this.modelId, longest.hash));
      if (longest !== undefined && state === null) continue; // evicted in between: look again
      const hit = longest === undefined || state === null ? undefined : { ...longest, state };
      await this.count(hit);
      return hit;
    }
  }

  /** Keeps the claimant's claims alive while it makes progress towards them. */
  async renewClaims(claimantId: string): Promise<void> {
    await this.runClaimsScript('renew', claimantId);
  }

  /** Gives up the claimant's remaining claims (its sequence ended before reaching them). */
  async releaseClaims(claimantId: string): Promise<void> {
    await this.runClaimsScript('del', claimantId);
    this.claims.delete(claimantId);
  }

  private async runClaimsScript(action: 'del' | 'renew', claimantId: string): Promise<void> {
    const held = this.claims.get(claimantId);
    if (held === undefined || held.size === 0) return;
    const claimKeys = [...held].map((hash) => this.keys.prefixClaim(this.modelId, hash));
    await this.redis.prefixCacheClaims(
      claimKeys.length,
      ...claimKeys,
      action,
      claimantId,
      CLAIM_TTL_MS,
    );
  }

  /**
   * In one atomic step: the longest cached boundary of `ascending`, and for a claimant the claims
   * on the uncached ones beyond it; `waitFor` is the next boundary when another sequence holds it.
   */
  private async findAndClaim(
    ascending: readonly PrefixBoundary[],
    claimantId: string | undefined,
  ): Promise<{ longest?: PrefixBoundary; waitFor?: PrefixBoundary }> {
    const reply = await this.redis.prefixCacheFindAndClaim(
      ascending.length * 2,
      ...ascending.map((prefix) => this.keys.prefixState(this.modelId, prefix.hash)),
      ...ascending.map((prefix) => this.keys.prefixClaim(this.modelId, prefix.hash)),
      ascending.length,
      claimantId ?? '',
      CLAIM_TTL_MS,
    );
    const [cached = 0, outcome = 0, ...claimed] = reply;
    const longest = cached > 0 ? ascending[cached - 1] : undefined;
    const next = ascending[cached];
    if (outcome === WAIT && next !== undefined) {
      return { ...(longest === undefined ? {} : { longest }), waitFor: next };
    }
    if (claimantId !== undefined && claimed.length > 0) {
      this.claims.set(
        claimantId,
        new Set(claimed.flatMap((index) => ascending[index - 1]?.hash ?? [])),
      );
    }
    return longest === undefined ? {} : { longest };
  }

  /** Waits until the claimed prefix's state is stored or its claim ends (released, expired). */
  private async awaitClaimed(hash: string, claimant: PrefixClaimant): Promise<void> {
    const stateKey = this.keys.prefixState(this.modelId, hash);
    const claimKey = this.keys.prefixClaim(this.modelId, hash);
    while (!claimant.stopWaiting()) {
      await new Promise((resolve) => setTimeout(resolve, CLAIM_POLL_MS));
      const replies = await this.redis.pipeline().exists(stateKey).exists(claimKey).exec();
      if (replies?.[0]?.[1] === 1 || replies?.[1]?.[1] === 0) return;
    }
  }

  private async count(hit: PrefixHit | undefined): Promise<void> {
    if (hit === undefined) {
      await this.redis.hincrby(this.keys.prefixStats, 'misses', 1);
      return;
    }
    await this.redis
      .multi()
      .zadd(this.keys.prefixIndex, Date.now(), this.keys.prefixState(this.modelId, hit.hash))
      .hincrby(this.keys.prefixStats, 'hits', 1)
      .exec();
  }

  /**
   * Stores a state unless already cached, ending its claim; evicts least-recently-used entries
   * over the bound.
   */
  async store(hash: string, state: Buffer, claimantId?: string): Promise<void> {
    if (claimantId !== undefined) this.claims.get(claimantId)?.delete(hash);
    if (state.byteLength > this.maxBytes) return;
    await this.redis.prefixCacheStore(
      this.keys.prefixState(this.modelId, hash),
      this.keys.prefixIndex,
      this.keys.prefixStats,
      this.keys.prefixClaim(this.modelId, hash),
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
