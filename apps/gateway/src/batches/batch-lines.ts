import { z } from 'zod';
import { generateJobSchema, type BatchRecord } from '#contracts';
import { ApiError, invalidRequest } from '../common/api-error.js';
import { parseRequest } from '../common/validation.js';
import type { ChatPrompts } from '../completions/chat-template.js';
import { mapRequest, type CompletionKind } from '../completions/request-mapping.js';
import type { ModelsService } from '../models/models.service.js';
import type { StateStore } from '../states/state-store.js';
import { batchFileLine } from './batch-output.js';

/** The shape of one input line (its `body` is validated as the endpoint's request). */
const inputLineSchema = z.object({
  custom_id: z.string().min(1).max(512),
  method: z.literal('POST', { error: "expected 'POST'" }),
  url: z.string(),
  body: z.record(z.string(), z.unknown()),
});

/** What a line checker needs to check a request as the endpoint itself would. */
export interface LineCheckerDependencies {
  models: Pick<ModelsService, 'assertKnown'>;
  states: Pick<StateStore, 'get'>;
  chatPrompts: ChatPrompts;
}

/** An input line: a generate job to queue, or the error-file line that rejects it. */
export type CheckedLine =
  | { accepted: true; customId: string; payload: z.infer<typeof generateJobSchema> }
  | { accepted: false; errorLine: string };

/**
 * Checks the input lines of one batch, in order: each must be JSON with a unique `custom_id`, a
 * POST to the batch's endpoint, and a body the endpoint accepts for the batch's owner. Which
 * models and saved states were already checked is remembered, so a file of many lines for one
 * model asks Redis once.
 */
export class BatchLineChecker {
  private readonly kind: CompletionKind;
  private readonly customIds = new Set<string>();
  private readonly models = new Map<string, ApiError | null>();
  private readonly states = new Map<string, ApiError | null>();

  constructor(
    private readonly deps: LineCheckerDependencies,
    private readonly batch: Pick<BatchRecord, 'owner' | 'endpoint'>,
  ) {
    this.kind = batch.endpoint === '/v1/chat/completions' ? 'chat' : 'completion';
  }

  /** Checks one line; only faults other than a bad request (Redis down) throw. */
  async check(line: string): Promise<CheckedLine> {
    let customId: string | null = null;
    try {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        throw invalidRequest('This line is not valid JSON.', null, 'invalid_json');
      }
      // Named in the error-file line even when the rest of the line is invalid.
      const candidate = (parsed as { custom_id?: unknown } | null)?.custom_id;
      if (typeof candidate === 'string') customId = candidate;
      const input = parseRequest(inputLineSchema, parsed);
      if (input.url !== this.batch.endpoint) {
        throw invalidRequest(
          `The line's url '${input.url}' is not the batch's endpoint '${this.batch.endpoint}'.`,
          'url',
        );
      }
      if (this.customIds.has(input.custom_id)) {
        throw invalidRequest(
          `The custom_id '${input.custom_id}' appears more than once in the file.`,
          'custom_id',
          'duplicate_custom_id',
        );
      }
      this.customIds.add(input.custom_id);
      if (input.body.stream === true)
        throw invalidRequest('Streaming is not available in batches.', 'body.stream');
      const request = await mapRequest(
        this.kind,
        input.body,
        this.batch.owner,
        this.deps.chatPrompts,
      );
      await this.remembered(this.models, request.model, () =>
        this.deps.models.assertKnown(request.model),
      );
      const stateId = request.stateId;
      if (stateId !== undefined) {
        await this.remembered(this.states, `${stateId}\0${request.model}`, async () => {
          const state = await this.deps.states.get(stateId, this.batch.owner, 'state_id');
          if (state.model !== request.model)
            throw invalidRequest(`The state '${stateId}' belongs to another model.`, 'state_id');
        });
      }
      return {
        accepted: true,
        customId: input.custom_id,
        payload: generateJobSchema.parse(request.payload),
      };
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      const response = { status_code: error.status, request_id: null, body: error.body };
      return { accepted: false, errorLine: batchFileLine(customId, response, null) };
    }
  }

  /** Runs `check` once per key; later calls throw the same error it threw, if any. */
  private async remembered(
    cache: Map<string, ApiError | null>,
    key: string,
    check: () => Promise<void>,
  ): Promise<void> {
    if (!cache.has(key)) {
      try {
        await check();
        cache.set(key, null);
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        cache.set(key, error);
      }
    }
    const known = cache.get(key);
    if (known) throw known;
  }
}
