import { Body, HttpCode, Param, Query } from '@nestjs/common';
import { Tenant } from '../auth/auth.middleware.js';
import { ApiController, ApiRoute } from '../docs/api-doc.js';
import { batchBodySchema, pageSchema } from '../docs/response-schemas.js';
import { SpendsTokens } from '../limits/rate-limit.guard.js';
import { batchCreateSchema, BatchesService } from './batches.service.js';

@ApiController('v1/batches')
export class BatchesController {
  constructor(private readonly batches: BatchesService) {}

  @ApiRoute('post', '', {
    summary: 'Create a batch from an uploaded JSONL file',
    tag: 'Batches',
    body: batchCreateSchema,
    response: batchBodySchema,
  })
  @HttpCode(200)
  @SpendsTokens()
  async create(@Body() body: unknown, @Tenant() tenant: string) {
    return this.batches.create(body, tenant);
  }

  @ApiRoute('get', '', {
    summary: 'List your batches (cursor pagination: limit, after)',
    tag: 'Batches',
    response: pageSchema(batchBodySchema),
  })
  async list(@Query() query: Record<string, unknown>, @Tenant() tenant: string) {
    return this.batches.list(query, tenant);
  }

  @ApiRoute('get', ':id', {
    summary: 'A batch, with live request counts',
    tag: 'Batches',
    response: batchBodySchema,
  })
  async retrieve(@Param('id') id: string, @Tenant() tenant: string) {
    return this.batches.get(id, tenant);
  }

  @ApiRoute('post', ':id/cancel', {
    summary: 'Cancel a batch: queued lines are dropped, running ones stop',
    tag: 'Batches',
    response: batchBodySchema,
  })
  @HttpCode(200)
  async cancel(@Param('id') id: string, @Tenant() tenant: string) {
    return this.batches.cancel(id, tenant);
  }
}
