import { Controller, Delete, Get, HttpCode, Inject, Param, Post, Req } from '@nestjs/common';
import type { Request } from 'express';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { GatewayKeys, RedisKeys } from '#contracts';
import type { GatewayEnv } from '#config';
import { Tenant } from '../auth/auth.middleware.js';
import { invalidRequest, notFound, payloadTooLarge } from '../common/api-error.js';
import { ApiDoc } from '../docs/api-doc.js';
import { streamIntoRedis } from '../files/file-store.js';
import { newId } from '../jobs/job-queues.js';
import { GATEWAY_ENV, GATEWAY_KEYS, PROBE_REDIS, REDIS_KEYS } from '../tokens.js';

const documentMetaSchema = z.object({
  owner: z.string(),
  bytes: z.coerce.number().int(),
  created_at: z.coerce.number().int(),
  filename: z.string(),
});
type DocumentMeta = z.infer<typeof documentMetaSchema>;

const documentObject = (id: string, meta: DocumentMeta) => ({
  id,
  object: 'document' as const,
  bytes: meta.bytes,
  created_at: meta.created_at,
  filename: meta.filename,
});

/**
 * Long documents for `/v1/jobs` and `/v1/states`: the request body is the text (UTF-8), streamed
 * straight into Redis, never held whole in the gateway (MAX_DOCUMENT_BYTES, default 64 MiB).
 */
@Controller('v1/documents')
export class DocumentsController {
  constructor(
    @Inject(PROBE_REDIS) private readonly redis: Redis,
    @Inject(REDIS_KEYS) private readonly keys: RedisKeys,
    @Inject(GATEWAY_KEYS) private readonly gateway: GatewayKeys,
    @Inject(GATEWAY_ENV) private readonly env: GatewayEnv,
  ) {}

  @Post()
  @HttpCode(200)
  @ApiDoc({
    summary: 'Upload a document: the raw UTF-8 text is the body (?filename= names it)',
    tag: 'Documents',
    body: 'text',
  })
  async upload(@Req() request: Request, @Tenant() tenant: string) {
    const limit = this.env.MAX_DOCUMENT_BYTES;
    if (Number(request.header('content-length') ?? 0) > limit) {
      throw payloadTooLarge(`The document is larger than the limit of ${limit} bytes.`);
    }
    const id = newId('doc_');
    const decoder = new TextDecoder('utf-8', { fatal: true });
    const bytes = await streamIntoRedis(this.redis, this.gateway, this.keys.document(id), request, {
      maxBytes: limit,
      what: 'document',
      check: (chunk, last) => {
        try {
          decoder.decode(chunk, { stream: !last });
        } catch {
          throw invalidRequest('The document is not valid UTF-8 text.', null, 'invalid_encoding');
        }
      },
    });
    const filename =
      typeof request.query.filename === 'string' ? request.query.filename : 'document.txt';
    const meta: DocumentMeta = {
      owner: tenant,
      bytes,
      created_at: Math.floor(Date.now() / 1000),
      filename,
    };
    await this.redis.hset(this.keys.documentMeta(id), meta);
    return documentObject(id, meta);
  }

  @Get(':id')
  @ApiDoc({ summary: 'A document', tag: 'Documents' })
  async retrieve(@Param('id') id: string, @Tenant() tenant: string) {
    return documentObject(id, await this.load(id, tenant));
  }

  @Delete(':id')
  @ApiDoc({ summary: 'Delete a document', tag: 'Documents' })
  async remove(@Param('id') id: string, @Tenant() tenant: string) {
    await this.load(id, tenant);
    await this.redis.del(this.keys.document(id), this.keys.documentMeta(id));
    return { id, object: 'document' as const, deleted: true };
  }

  private async load(id: string, tenant: string): Promise<DocumentMeta> {
    const parsed = documentMetaSchema.safeParse(
      await this.redis.hgetall(this.keys.documentMeta(id)),
    );
    if (!parsed.success || parsed.data.owner !== tenant) throw notFound('document', id);
    return parsed.data;
  }
}

/** Throws 404 (naming `param`) unless the document exists and belongs to `tenant`. */
export async function assertDocumentOwned(
  redis: Redis,
  keys: RedisKeys,
  id: string,
  tenant: string,
  param: string,
): Promise<void> {
  const owner = await redis.hget(keys.documentMeta(id), 'owner');
  if (owner !== tenant) throw notFound('document', id, param);
}
