import type { RedisClient } from '#cluster';
import { z } from 'zod';
import { parseRequest } from './validation.js';

export const listQuerySchema = z.object({
  /** @defaultValue 20, as in OpenAI's list endpoints */
  limit: z.coerce.number().int().min(1).max(100).default(20),
  after: z.string().min(1).optional(),
  order: z.enum(['asc', 'desc']).default('desc'),
});

export interface Page<T> {
  object: 'list';
  data: T[];
  first_id: string | null;
  last_id: string | null;
  has_more: boolean;
}

/**
 * OpenAI's cursor pagination (`after` = the last id of the previous page) over a sorted set of
 * ids scored by creation time. An `after` that is not in the set (another tenant's id, a deleted
 * one) gives an empty page rather than revealing anything.
 */
export async function pageOfIds(
  redis: RedisClient,
  indexKey: string,
  query: unknown,
): Promise<{ ids: string[]; hasMore: boolean }> {
  const { limit, after, order } = parseRequest(listQuerySchema, query);
  let start = 0;
  if (after !== undefined) {
    const rank =
      order === 'desc' ? await redis.zrevrank(indexKey, after) : await redis.zrank(indexKey, after);
    if (rank === null) return { ids: [], hasMore: false };
    start = rank + 1;
  }
  const stop = start + limit; // one more than the page, to know whether more follow
  const ids =
    order === 'desc'
      ? await redis.zrevrange(indexKey, start, stop)
      : await redis.zrange(indexKey, start, stop);
  return { ids: ids.slice(0, limit), hasMore: ids.length > limit };
}

export function page<T extends { id: string }>(data: T[], hasMore: boolean): Page<T> {
  return {
    object: 'list',
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: hasMore,
  };
}
