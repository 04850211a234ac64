import type { RedisClient } from '#cluster';
import { savedStateMetaSchema, type RedisKeys, type SavedStateMeta } from '#contracts';
import { notFound } from '../common/api-error.js';
import type { StateBody } from '../docs/response-schemas.js';

/** Saved recurrent states (`/v1/states`), written by workers, read and deleted by tenants. */
export class StateStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
  ) {}

  /** The state's metadata, or 404 when it does not exist, expired, or is another tenant's. */
  async get(stateId: string, tenant: string, param: string | null = null): Promise<SavedStateMeta> {
    const raw = await this.redis.hgetall(this.keys.savedStateMeta(stateId));
    const parsed = savedStateMetaSchema.safeParse(raw);
    if (!parsed.success || parsed.data.owner !== tenant) throw notFound('state', stateId, param);
    return parsed.data;
  }

  async delete(stateId: string, tenant: string): Promise<void> {
    await this.get(stateId, tenant);
    await this.redis.del(this.keys.savedState(stateId), this.keys.savedStateMeta(stateId));
  }
}

/** A saved state as `/v1/states` shows it. */
export function stateObject(id: string, meta: SavedStateMeta): StateBody {
  return {
    id,
    object: 'state',
    model: meta.model,
    position: meta.position,
    created_at: Math.floor(Date.parse(meta.createdAt) / 1000),
    expires_at: Math.floor(Date.parse(meta.expiresAt) / 1000),
  };
}
