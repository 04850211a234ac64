import type { RedisClient } from '#cluster';
import { z } from 'zod';
import type { GatewayKeys, RedisKeys } from '#contracts';
import { invalidRequest, notFound } from '../common/api-error.js';
import { pageOfIds } from '../common/pagination.js';
import { streamIntoRedis } from '../files/file-store.js';
import type { DocumentBody } from '../docs/response-schemas.js';
import { newId } from '../jobs/job-queues.js';

const documentMetaSchema = z.object({
  owner: z.string(),
  bytes: z.coerce.number().int(),
  created_at: z.coerce.number().int(),
  filename: z.string(),
});
export type DocumentMeta = z.infer<typeof documentMetaSchema>;

/** A document as `/v1/documents` shows it. */
export const documentObject = (id: string, meta: DocumentMeta): DocumentBody => ({
  id,
  object: 'document',
  bytes: meta.bytes,
  created_at: meta.created_at,
  filename: meta.filename,
});

/** Rejects the first chunk that is not part of valid UTF-8 text (chunks may split characters). */
function utf8Check(): (chunk: Buffer, last: boolean) => void {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  return (chunk, last) => {
    try {
      decoder.decode(chunk, { stream: !last });
    } catch {
      throw invalidRequest('The document is not valid UTF-8 text.', null, 'invalid_encoding');
    }
  };
}

/**
 * Long documents in Redis: the text under `RedisKeys.document` (where workers read it) and its
 * metadata (owner, size, name) beside it. Tenants never see each other's documents.
 */
export class DocumentStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly gateway: GatewayKeys,
  ) {}

  /**
   * Streams `text` into a new document without holding it in memory; a body over `maxBytes` or
   * not UTF-8 fails (400/413) and leaves nothing behind. Returns the id and metadata.
   */
  async create(
    text: AsyncIterable<Buffer>,
    options: { owner: string; filename: string; maxBytes: number },
  ): Promise<{ id: string; meta: DocumentMeta }> {
    const id = newId('doc_');
    const bytes = await streamIntoRedis(this.redis, this.gateway, this.keys.document(id), text, {
      maxBytes: options.maxBytes,
      what: 'document',
      check: utf8Check(),
    });
    const meta: DocumentMeta = {
      owner: options.owner,
      bytes,
      created_at: Math.floor(Date.now() / 1000),
      filename: options.filename,
    };
    await this.redis
      .multi()
      .hset(this.keys.documentMeta(id), meta)
      .zadd(this.gateway.documentIndex(meta.owner), Date.now(), id)
      .exec();
    return { id, meta };
  }

  /** One page of a tenant's document ids (cursor pagination, newest first unless asked). */
  async pageOfIds(tenant: string, query: unknown): Promise<{ ids: string[]; hasMore: boolean }> {
    return pageOfIds(this.redis, this.gateway.documentIndex(tenant), query);
  }

  /** The documents of `ids` as the API shows them (ids deleted meanwhile are left out). */
  async objects(ids: readonly string[]): Promise<DocumentBody[]> {
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hgetall(this.keys.documentMeta(id));
    const results = (await pipeline.exec()) ?? [];
    return results.flatMap(([, raw], position) => {
      const parsed = documentMetaSchema.safeParse(raw);
      const id = ids[position];
      return parsed.success && id !== undefined ? [documentObject(id, parsed.data)] : [];
    });
  }

  /** The document's metadata; 404 (naming `param`) when missing or another tenant's. */
  async get(id: string, tenant: string, param: string | null = null): Promise<DocumentMeta> {
    const parsed = documentMetaSchema.safeParse(
      await this.redis.hgetall(this.keys.documentMeta(id)),
    );
    if (!parsed.success || parsed.data.owner !== tenant) throw notFound('document', id, param);
    return parsed.data;
  }

  /** Throws 404 (naming `param`) unless the document exists and belongs to `tenant`. */
  async assertOwned(id: string, tenant: string, param: string): Promise<void> {
    const owner = await this.redis.hget(this.keys.documentMeta(id), 'owner');
    if (owner !== tenant) throw notFound('document', id, param);
  }

  /** Deletes the tenant's document (404 when it is not theirs). */
  async delete(id: string, tenant: string): Promise<void> {
    await this.get(id, tenant);
    await this.redis
      .multi()
      .del(this.keys.document(id), this.keys.documentMeta(id))
      .zrem(this.gateway.documentIndex(tenant), id)
      .exec();
  }
}
