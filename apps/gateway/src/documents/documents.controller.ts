import { HttpCode, Inject, Param, Query, Req } from '@nestjs/common';
import type { Request } from 'express';
import type { GatewayEnv } from '#config';
import { Tenant } from '../auth/auth.middleware.js';
import { payloadTooLarge } from '../common/api-error.js';
import { GATEWAY_ENV } from '../core/tokens.js';
import { ApiController, ApiRoute } from '../docs/api-doc.js';
import { deletedSchema, documentBodySchema, pageSchema } from '../docs/response-schemas.js';
import { page } from '../common/pagination.js';
import { documentObject, DocumentStore } from './document-store.js';

/**
 * Long documents for `/v1/jobs` and `/v1/states`: the request body is the text (UTF-8), streamed
 * straight into Redis, never held whole in the gateway (MAX_DOCUMENT_BYTES, default 64 MiB).
 */
@ApiController('v1/documents')
export class DocumentsController {
  constructor(
    private readonly documents: DocumentStore,
    @Inject(GATEWAY_ENV) private readonly env: GatewayEnv,
  ) {}

  @ApiRoute('post', '', {
    summary: 'Upload a document: the raw UTF-8 text is the body (?filename= names it)',
    tag: 'Documents',
    body: 'text',
    response: documentBodySchema,
  })
  @HttpCode(200)
  async upload(@Req() request: Request, @Tenant() tenant: string) {
    const limit = this.env.MAX_DOCUMENT_BYTES;
    if (Number(request.header('content-length') ?? 0) > limit) {
      throw payloadTooLarge(`The document is larger than the limit of ${limit} bytes.`);
    }
    const filename =
      typeof request.query.filename === 'string' ? request.query.filename : 'document.txt';
    const { id, meta } = await this.documents.create(request, {
      owner: tenant,
      filename,
      maxBytes: limit,
    });
    return documentObject(id, meta);
  }

  @ApiRoute('get', '', {
    summary: 'List your documents, newest first (cursor pagination: limit, after, order)',
    tag: 'Documents',
    response: pageSchema(documentBodySchema),
  })
  async list(@Query() query: Record<string, unknown>, @Tenant() tenant: string) {
    const { ids, hasMore } = await this.documents.pageOfIds(tenant, query);
    return page(await this.documents.objects(ids), hasMore);
  }

  @ApiRoute('get', ':id', { summary: 'A document', tag: 'Documents', response: documentBodySchema })
  async retrieve(@Param('id') id: string, @Tenant() tenant: string) {
    return documentObject(id, await this.documents.get(id, tenant));
  }

  @ApiRoute('delete', ':id', {
    summary: 'Delete a document',
    tag: 'Documents',
    response: deletedSchema('document'),
  })
  async remove(@Param('id') id: string, @Tenant() tenant: string) {
    await this.documents.delete(id, tenant);
    return { id, object: 'document' as const, deleted: true as const };
  }
}
