import { Body, Headers, HttpCode, Param, Res } from '@nestjs/common';
import type { Response } from 'express';
import { Tenant } from '../auth/auth.middleware.js';
import { lastEventId } from '../common/last-event-id.js';
import { ApiController, ApiRoute } from '../docs/api-doc.js';
import { chatCompletionBodySchema, completionBodySchema } from '../docs/response-schemas.js';
import { SpendsTokens } from '../limits/rate-limit.guard.js';
import { CompletionsService } from './completions.service.js';
import { chatRequestSchema, completionRequestSchema } from './openai-schemas.js';

@ApiController('v1')
export class CompletionsController {
  constructor(private readonly completions: CompletionsService) {}

  @ApiRoute('post', 'completions', {
    summary: 'Create a completion (OpenAI)',
    tag: 'OpenAI',
    body: completionRequestSchema,
    response: completionBodySchema,
    streams: true,
  })
  @HttpCode(200)
  @SpendsTokens()
  async complete(
    @Body() body: unknown,
    @Tenant() tenant: string,
    @Res() response: Response,
  ): Promise<void> {
    await this.completions.create('completion', body, tenant, response);
  }

  @ApiRoute('post', 'chat/completions', {
    summary: 'Create a chat completion (OpenAI)',
    tag: 'OpenAI',
    body: chatRequestSchema,
    response: chatCompletionBodySchema,
    streams: true,
  })
  @HttpCode(200)
  @SpendsTokens()
  async chat(
    @Body() body: unknown,
    @Tenant() tenant: string,
    @Res() response: Response,
  ): Promise<void> {
    await this.completions.create('chat', body, tenant, response);
  }

  @ApiRoute('get', 'completions/:id/stream', {
    summary: 'Reconnect to a streamed completion after Last-Event-ID',
    tag: 'OpenAI',
    streams: true,
  })
  async resumeCompletion(
    @Param('id') id: string,
    @Tenant() tenant: string,
    @Headers('last-event-id') header: string | undefined,
    @Res() response: Response,
  ): Promise<void> {
    await this.completions.resume('completion', id, tenant, lastEventId(header), response);
  }

  @ApiRoute('get', 'chat/completions/:id/stream', {
    summary: 'Reconnect to a streamed chat completion after Last-Event-ID',
    tag: 'OpenAI',
    streams: true,
  })
  async resumeChat(
    @Param('id') id: string,
    @Tenant() tenant: string,
    @Headers('last-event-id') header: string | undefined,
    @Res() response: Response,
  ): Promise<void> {
    await this.completions.resume('chat', id, tenant, lastEventId(header), response);
  }
}
