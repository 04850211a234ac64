import { Body, Controller, Get, Headers, HttpCode, Inject, Param, Post, Res } from '@nestjs/common';
import type { Response } from 'express';
import { Tenant } from '../auth/auth.middleware.js';
import { lastEventId } from '../common/last-event-id.js';
import { ApiDoc } from '../docs/api-doc.js';
import { COMPLETIONS } from '../tokens.js';
import type { CompletionsService } from './completions.service.js';
import { chatRequestSchema, completionRequestSchema } from './openai-schemas.js';

@Controller('v1')
export class CompletionsController {
  constructor(@Inject(COMPLETIONS) private readonly completions: CompletionsService) {}

  @Post('completions')
  @HttpCode(200)
  @ApiDoc({
    summary: 'Create a completion (OpenAI)',
    tag: 'OpenAI',
    body: completionRequestSchema,
    streams: true,
  })
  async complete(
    @Body() body: unknown,
    @Tenant() tenant: string,
    @Res() response: Response,
  ): Promise<void> {
    await this.completions.create('completion', body, tenant, response);
  }

  @Post('chat/completions')
  @HttpCode(200)
  @ApiDoc({
    summary: 'Create a chat completion (OpenAI)',
    tag: 'OpenAI',
    body: chatRequestSchema,
    streams: true,
  })
  async chat(
    @Body() body: unknown,
    @Tenant() tenant: string,
    @Res() response: Response,
  ): Promise<void> {
    await this.completions.create('chat', body, tenant, response);
  }

  @Get('completions/:id/stream')
  @ApiDoc({
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

  @Get('chat/completions/:id/stream')
  @ApiDoc({
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
