import { HttpCode, Inject, Param, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { z } from 'zod';
import { filePurposeSchema } from '#contracts';
import type { GatewayEnv } from '#config';
import { Tenant } from '../auth/auth.middleware.js';
import { invalidRequest, payloadTooLarge } from '../common/api-error.js';
import { page } from '../common/pagination.js';
import { parseRequest } from '../common/validation.js';
import { GATEWAY_ENV } from '../core/tokens.js';
import { ApiController, ApiRoute } from '../docs/api-doc.js';
import { deletedSchema, fileBodySchema, pageSchema } from '../docs/response-schemas.js';
import { newId } from '../jobs/job-queues.js';
import { fileObject, FileStore } from './file-store.js';
import { receiveMultipart } from './multipart.js';

/** Purposes a client may upload with (`batch_output` is written by the gateway only). */
const uploadPurposeSchema = z.enum(['batch', 'user_data'], {
  error: "expected 'batch' or 'user_data'",
});

/** Room for multipart boundaries and headers around the file part. @defaultValue 64 KiB */
const MULTIPART_OVERHEAD_BYTES = 64 * 1024;

@ApiController('v1/files')
export class FilesController {
  constructor(
    private readonly files: FileStore,
    @Inject(GATEWAY_ENV) private readonly env: GatewayEnv,
  ) {}

  @ApiRoute('post', '', {
    summary: 'Upload a file (multipart: file, purpose)',
    tag: 'Files',
    body: 'multipart',
    response: fileBodySchema,
  })
  @HttpCode(200)
  async upload(@Req() request: Request, @Tenant() tenant: string) {
    const declared = Number(request.header('content-length') ?? 0);
    if (declared > this.env.MAX_FILE_BYTES + MULTIPART_OVERHEAD_BYTES) {
      throw payloadTooLarge(
        `The file is larger than the limit of ${this.env.MAX_FILE_BYTES} bytes.`,
        'file',
      );
    }
    const id = newId('file-');
    const received = await receiveMultipart(request, (stream) =>
      this.files.receive(id, stream, this.env.MAX_FILE_BYTES),
    );
    try {
      if (received.file === undefined)
        throw invalidRequest("Missing required parameter: 'file'.", 'file');
      const purpose = parseRequest(
        z.object({ purpose: uploadPurposeSchema }),
        received.fields,
      ).purpose;
      const record = {
        id,
        owner: tenant,
        bytes: received.file.bytes,
        created_at: Math.floor(Date.now() / 1000),
        filename: received.file.filename,
        purpose,
      };
      await this.files.register(record);
      return fileObject(record);
    } catch (error) {
      await this.files.discard(id);
      throw error;
    }
  }

  @ApiRoute('get', '', {
    summary: 'List your files (cursor pagination: limit, after, order, purpose)',
    tag: 'Files',
    response: pageSchema(fileBodySchema),
  })
  async list(@Query() query: Record<string, unknown>, @Tenant() tenant: string) {
    const { purpose, ...cursor } = query;
    const wanted = purpose === undefined ? undefined : parseRequest(filePurposeSchema, purpose);
    // A purpose filter is applied within the page, as the index is one per tenant.
    const { ids, hasMore } = await this.files.pageOfIds(tenant, cursor);
    const records = await this.files.records(ids);
    return page(
      records.filter((record) => wanted === undefined || record.purpose === wanted).map(fileObject),
      hasMore,
    );
  }

  @ApiRoute('get', ':id', { summary: 'A file', tag: 'Files', response: fileBodySchema })
  async retrieve(@Param('id') id: string, @Tenant() tenant: string) {
    return fileObject(await this.files.get(id, tenant));
  }

  @ApiRoute('get', ':id/content', { summary: "A file's content", tag: 'Files', response: 'binary' })
  async content(@Param('id') id: string, @Tenant() tenant: string, @Res() response: Response) {
    const record = await this.files.get(id, tenant);
    response.setHeader('Content-Type', 'application/octet-stream');
    response.setHeader('Content-Length', String(record.bytes));
    for await (const chunk of this.files.content(id)) {
      if (!response.write(chunk)) await new Promise((resolve) => response.once('drain', resolve));
    }
    response.end();
  }

  @ApiRoute('delete', ':id', {
    summary: 'Delete a file',
    tag: 'Files',
    response: deletedSchema('file'),
  })
  async remove(@Param('id') id: string, @Tenant() tenant: string) {
    await this.files.delete(await this.files.get(id, tenant));
    return { id, object: 'file' as const, deleted: true as const };
  }
}
