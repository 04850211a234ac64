import type { RedisClient } from './redis.js';
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
  redis: RedisClient,
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

function parseMeta(raw: Record<string, string>): SavedStateMeta | undefined {
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
  redis: RedisClient,
  keys: RedisKeys,
  stateId: string,
): Promise<{ meta: SavedStateMeta; state: Buffer } | undefined> {
  // One transaction: the description and the bytes of the same state, never of two versions.
  const replies = await redis
    .multi()
    .hgetall(keys.savedStateMeta(stateId))
    .getBuffer(keys.savedState(stateId))
    .exec();
  const [metaReply, stateReply] = replies ?? [];
  const failure = metaReply?.[0] ?? stateReply?.[0];
  if (failure) throw failure;
  const meta = parseMeta(metaReply?.[1] as Record<string, string>);
  const state = stateReply?.[1] as Buffer | null;
  if (meta === undefined || state === null) return undefined;
  return { meta, state };
}
