import { Body, Headers, HttpCode, Param, Query, Res } from '@nestjs/common';
import type { Response } from 'express';
import { Tenant } from '../auth/auth.middleware.js';
import { lastEventId } from '../common/last-event-id.js';
import { ApiController, ApiRoute } from '../docs/api-doc.js';
import { jobBodySchema, pageSchema } from '../docs/response-schemas.js';
import { SpendsTokens } from '../limits/rate-limit.guard.js';
import { jobCreateSchema } from './job-requests.js';
import { JobsService } from './jobs.service.js';

@ApiController('v1/jobs')
export class JobsController {
  constructor(private readonly jobs: JobsService) {}

  @ApiRoute('post', '', {
    summary: 'Submit a generate, score or digest job',
    tag: 'Jobs',
    body: jobCreateSchema,
    response: jobBodySchema,
  })
  @HttpCode(200)
  @SpendsTokens()
  async create(@Body() body: unknown, @Tenant() tenant: string) {
    return this.jobs.create(body, tenant);
  }

  @ApiRoute('get', '', {
    summary: 'List your jobs, newest first (cursor pagination: limit, after, order)',
    tag: 'Jobs',
    response: pageSchema(jobBodySchema),
  })
  async list(@Query() query: Record<string, unknown>, @Tenant() tenant: string) {
    return this.jobs.list(tenant, query);
  }

  @ApiRoute('get', ':id', {
    summary: 'A job: status, progress, ETA, the worker holding it, result',
    tag: 'Jobs',
    response: jobBodySchema,
  })
  async retrieve(@Param('id') id: string, @Tenant() tenant: string) {
    return this.jobs.get(id, tenant);
  }

  @ApiRoute('get', ':id/events', {
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

  @ApiRoute('post', ':id/cancel', {
    summary: 'Cancel a job (partial output is kept)',
    tag: 'Jobs',
    response: jobBodySchema,
  })
  @HttpCode(200)
  async cancel(@Param('id') id: string, @Tenant() tenant: string) {
    return this.jobs.cancel(id, tenant);
  }
}
