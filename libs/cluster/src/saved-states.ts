import type { Redis } from 'ioredis';
import type { RedisKeys } from '#contracts';

/** A recurrent state saved for later requests (`/v1/states`, digest jobs). */
export interface SavedStateMeta {
  model: string;
  owner: string;
  /** Tokens the state holds (the absolute position of the next token). */
  position: number;
  createdAt: string;
  expiresAt: string;
}

export async function saveState(
  redis: Redis,
  keys: RedisKeys,
  stateId: string,
  state: Buffer,
  meta: SavedStateMeta,
  ttlSeconds: number,
): Promise<void> {
  await redis
    .multi()
    .set(keys.savedState(stateId), state, 'EX', ttlSeconds)
    .hset(keys.savedStateMeta(stateId), { ...meta, position: String(meta.position) })
    .expire(keys.savedStateMeta(stateId), ttlSeconds)
    .exec();
}

export async function loadSavedStateMeta(
  redis: Redis,
  keys: RedisKeys,
  stateId: string,
): Promise<SavedStateMeta | undefined> {
  const raw = await redis.hgetall(keys.savedStateMeta(stateId));
  if (raw.model === undefined || raw.owner === undefined) return undefined;
  return {
    model: raw.model,
    owner: raw.owner,
    position: Number(raw.position),
    createdAt: raw.createdAt ?? '',
    expiresAt: raw.expiresAt ?? '',
  };
}

export async function loadSavedState(
  redis: Redis,
  keys: RedisKeys,
  stateId: string,
): Promise<{ meta: SavedStateMeta; state: Buffer } | undefined> {
  const meta = await loadSavedStateMeta(redis, keys, stateId);
  const state = await redis.getBuffer(keys.savedState(stateId));
  if (meta === undefined || state === null) return undefined;
  return { meta, state };
}
