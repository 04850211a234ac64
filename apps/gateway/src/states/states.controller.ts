import { Body, HttpCode, Param, Res } from '@nestjs/common';
import type { Response } from 'express';
import { z } from 'zod';
import { JobName } from '#contracts';
import { Tenant } from '../auth/auth.middleware.js';
import { clientGone } from '../common/sse.js';
import { parseRequest } from '../common/validation.js';
import { ApiController, ApiRoute } from '../docs/api-doc.js';
import { deletedSchema, stateBodySchema } from '../docs/response-schemas.js';
import { JobsService } from '../jobs/jobs.service.js';
import { SpendsTokens } from '../limits/rate-limit.guard.js';
import { stateObject, StateStore } from './state-store.js';

export const stateCreateSchema = z.strictObject({
  model: z.string().min(1),
  /** The text to digest; or `document_id` of an uploaded document. Exactly one of the two. */
  prompt: z.string().optional(),
  document_id: z.string().min(1).optional(),
  /** Continue this saved state with the new text. */
  state_id: z.string().min(1).optional(),
  /** @defaultValue 3600 */
  ttl_seconds: z
    .number()
    .int()
    .min(1)
    .max(30 * 24 * 3600)
    .optional(),
});

/**
 * Saved states: a text digested into a model's recurrent state, kept for `ttl_seconds`, which
 * completions continue from with `state_id` (only their new text is processed).
 */
@ApiController('v1/states')
export class StatesController {
  constructor(
    private readonly jobs: JobsService,
    private readonly states: StateStore,
  ) {}

  @ApiRoute('post', '', {
    summary: 'Digest a text or document into a saved state (waits for it)',
    tag: 'States',
    body: stateCreateSchema,
    response: stateBodySchema,
  })
  @HttpCode(200)
  @SpendsTokens()
  async create(
    @Body() body: unknown,
    @Tenant() tenant: string,
    @Res({ passthrough: true }) response: Response,
  ) {
    const request = parseRequest(stateCreateSchema, body);
    const jobId = await this.jobs.submit(
      {
        type: 'digest',
        model: request.model,
        ...(request.prompt === undefined ? {} : { prompt: request.prompt }),
        ...(request.document_id === undefined ? {} : { document_id: request.document_id }),
        ...(request.state_id === undefined ? {} : { state_id: request.state_id }),
        ...(request.ttl_seconds === undefined ? {} : { state_ttl_seconds: request.ttl_seconds }),
      },
      tenant,
    );
    const result = await this.jobs.awaitResult(JobName.Digest, jobId, tenant, clientGone(response));
    if (result === undefined) return undefined;
    return stateObject(result.stateId, await this.states.get(result.stateId, tenant));
  }

  @ApiRoute('get', ':id', { summary: 'A saved state', tag: 'States', response: stateBodySchema })
  async retrieve(@Param('id') id: string, @Tenant() tenant: string) {
    return stateObject(id, await this.states.get(id, tenant));
  }

  @ApiRoute('delete', ':id', {
    summary: 'Delete a saved state',
    tag: 'States',
    response: deletedSchema('state'),
  })
  async remove(@Param('id') id: string, @Tenant() tenant: string) {
    await this.states.delete(id, tenant);
    return { id, object: 'state' as const, deleted: true as const };
  }
}
