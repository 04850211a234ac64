import { Body, Controller, Get, Headers, HttpCode, Inject, Param, Post, Res } from '@nestjs/common';
import type { Response } from 'express';
import { Tenant } from '../auth/auth.middleware.js';
import { lastEventId } from '../common/last-event-id.js';
import { ApiDoc } from '../docs/api-doc.js';
import { JOBS } from '../tokens.js';
import { jobCreateSchema, type JobsService } from './jobs.service.js';

@Controller('v1/jobs')
export class JobsController {
  constructor(@Inject(JOBS) private readonly jobs: JobsService) {}

  @Post()
  @HttpCode(200)
  @ApiDoc({ summary: 'Submit a generate, score or digest job', tag: 'Jobs', body: jobCreateSchema })
  async create(@Body() body: unknown, @Tenant() tenant: string) {
    return this.jobs.create(body, tenant);
  }

  @Get(':id')
  @ApiDoc({ summary: 'A job: status, progress, ETA, the worker holding it, result', tag: 'Jobs' })
  async retrieve(@Param('id') id: string, @Tenant() tenant: string) {
    return this.jobs.get(id, tenant);
  }

  @Get(':id/events')
  @ApiDoc({
    summary: "A job's events as SSE (resumable with Last-Event-ID)",
    tag: 'Jobs',
    streams: true,
  })
  async events(
    @Param('id') id: string,
    @Tenant() tenant: string,
    @Headers('last-event-id') header: string | undefined,
    @Res() response: Response,
  ): Promise<void> {
    await this.jobs.events(id, tenant, lastEventId(header), response);
  }

  @Post(':id/cancel')
  @HttpCode(200)
  @ApiDoc({ summary: 'Cancel a job (partial output is kept)', tag: 'Jobs' })
  async cancel(@Param('id') id: string, @Tenant() tenant: string) {
    return this.jobs.cancel(id, tenant);
  }
}
