import { Body, Controller, Get, HttpCode, Inject, Param, Post, Query } from '@nestjs/common';
import { Tenant } from '../auth/auth.middleware.js';
import { ApiDoc } from '../docs/api-doc.js';
import { BATCHES } from '../tokens.js';
import { batchCreateSchema, type BatchesService } from './batches.service.js';

@Controller('v1/batches')
export class BatchesController {
  constructor(@Inject(BATCHES) private readonly batches: BatchesService) {}

  @Post()
  @HttpCode(200)
  @ApiDoc({
    summary: 'Create a batch from an uploaded JSONL file',
    tag: 'Batches',
    body: batchCreateSchema,
  })
  async create(@Body() body: unknown, @Tenant() tenant: string) {
    return this.batches.create(body, tenant);
  }

  @Get()
  @ApiDoc({ summary: 'List your batches (cursor pagination: limit, after)', tag: 'Batches' })
  async list(@Query() query: Record<string, unknown>, @Tenant() tenant: string) {
    return this.batches.list(query, tenant);
  }

  @Get(':id')
  @ApiDoc({ summary: 'A batch, with live request counts', tag: 'Batches' })
  async retrieve(@Param('id') id: string, @Tenant() tenant: string) {
    return this.batches.get(id, tenant);
  }

  @Post(':id/cancel')
  @HttpCode(200)
  @ApiDoc({
    summary: 'Cancel a batch: queued lines are dropped, running ones stop',
    tag: 'Batches',
  })
  async cancel(@Param('id') id: string, @Tenant() tenant: string) {
    return this.batches.cancel(id, tenant);
  }
}
