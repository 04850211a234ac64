import type { Response } from 'express';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import {
  JobName,
  JobPriority,
  jobProgressSchema,
  jobResultSchemas,
  modelIdSchema,
  samplingSchema,
  type GatewayJobRecord,
  type JobPayloadInput,
  type RedisKeys,
  type TextSource,
} from '#contracts';
import { readStreamEnd, StreamedChoices, type DoneEvent } from '#cluster';
import { invalidRequest, jobFailed, modelNotFound, notFound } from '../common/api-error.js';
import { ServerSentEvents, clientGone } from '../common/sse.js';
import { parseRequest } from '../common/validation.js';
import { openAiUsage } from '../completions/openai-format.js';
import { assertDocumentOwned } from '../documents/documents.controller.js';
import type { ModelsService } from '../models/models.service.js';
import type { StateStore } from '../states/state-store.js';
import {
  followJobStream,
  readStreamUntil,
  type BlockingReaders,
} from '../streams/job-stream-reader.js';
import { resultFromStream } from '../streams/job-results.js';
import { newId, type JobQueues } from './job-queues.js';

const source = {
  model: z.string().min(1),
  /** Inline text; or `document_id` of an uploaded document. Exactly one of the two. */
  prompt: z.string().optional(),
  document_id: z.string().min(1).optional(),
};

export const jobCreateSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('generate'),
    ...source,
    ...samplingSchema.shape,
    n: z.number().int().min(1).max(16).optional(),
    state_id: z.string().min(1).optional(),
  }),
  z.strictObject({
    type: z.literal('score'),
    ...source,
    window_tokens: z.number().int().min(1).optional(),
    token_logprobs: z.boolean().optional(),
  }),
  z.strictObject({
    type: z.literal('digest'),
    ...source,
    state_id: z.string().min(1).optional(),
    state_ttl_seconds: z
      .number()
      .int()
      .min(1)
      .max(30 * 24 * 3600)
      .optional(),
  }),
]);
export type JobCreateRequest = z.infer<typeof jobCreateSchema>;

type JobStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

type StreamEnd = NonNullable<Awaited<ReturnType<typeof readStreamEnd>>>;

/** Milliseconds since the epoch at which a Redis stream entry was added (its id's first part). */
function streamEntryTime(id: string | undefined): number {
  return id === undefined ? Date.now() : Number(id.split('-')[0]);
}

/**
 * Asynchronous jobs (`/v1/jobs`): generate, score and digest over inline text or an uploaded
 * document, at document priority (after interactive and batch work). Completions submitted
 * through the OpenAI endpoints can be inspected and cancelled here too, by their id.
 */
export class JobsService {
  constructor(
    private readonly jobs: JobQueues,
    private readonly models: ModelsService,
    private readonly states: StateStore,
    private readonly readers: BlockingReaders,
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  async create(body: unknown, tenant: string) {
    const request = parseRequest(jobCreateSchema, body);
    const jobId = await this.submit(request, tenant);
    // Just queued: answered from what is known, without reading the job back.
    return {
      id: jobId,
      object: 'job' as const,
      type: request.type,
      model: request.model,
      status: 'queued' as const,
      created_at: nowSeconds(),
      started_at: null,
      finished_at: null,
      progress: null,
      eta_seconds: null,
      worker: null,
      result: null,
      error: null,
    };
  }

  /** Validates ownership of everything the request names, then queues it; returns the job id. */
  async submit(request: JobCreateRequest, tenant: string): Promise<string> {
    if (!modelIdSchema.safeParse(request.model).success) throw modelNotFound(request.model);
    await this.models.assertKnown(request.model);
    const input = await this.textSource(request, tenant);
    if (request.type !== 'score' && request.state_id !== undefined) {
      const state = await this.states.get(request.state_id, tenant, 'state_id');
      if (state.model !== request.model) {
        throw invalidRequest(
          `The state '${request.state_id}' belongs to model '${state.model}'.`,
          'state_id',
        );
      }
    }
    const jobId = newId('job_');
    const base = { model: request.model, input, owner: tenant };
    const record = {
      owner: tenant,
      kind: 'job' as const,
      model: request.model,
      created: nowSeconds(),
    };
    switch (request.type) {
      case 'generate': {
        const { n, state_id } = request;
        // The sampler fields, exactly as the job payload names them.
        const sampling = samplingSchema.parse(
          Object.fromEntries(
            Object.entries(request).filter(([name]) => name in samplingSchema.shape),
          ),
        );
        const payload: JobPayloadInput<'generate'> = {
          ...base,
          sampling,
          ...(n === undefined ? {} : { n }),
          ...(state_id === undefined ? {} : { stateId: state_id }),
        };
        await this.jobs.submit({
          jobId,
          name: JobName.Generate,
          payload,
          priority: JobPriority.Document,
          record: {
            ...record,
            choices: n ?? 1,
            maxOutputTokens: sampling.max_tokens * (n ?? 1),
            logprobs: sampling.logprobs !== undefined,
          },
        });
        break;
      }
      case 'score':
        await this.jobs.submit({
          jobId,
          name: JobName.Score,
          payload: {
            ...base,
            ...(request.window_tokens === undefined ? {} : { windowTokens: request.window_tokens }),
            ...(request.token_logprobs === undefined
              ? {}
              : { tokenLogprobs: request.token_logprobs }),
          },
          priority: JobPriority.Document,
          record,
        });
        break;
      case 'digest':
        await this.jobs.submit({
          jobId,
          name: JobName.Digest,
          payload: {
            ...base,
            ...(request.state_id === undefined ? {} : { stateId: request.state_id }),
            ...(request.state_ttl_seconds === undefined
              ? {}
              : { stateTtlSeconds: request.state_ttl_seconds }),
          },
          priority: JobPriority.Document,
          record,
        });
        break;
    }
    return jobId;
  }

  private async textSource(request: JobCreateRequest, tenant: string): Promise<TextSource> {
    if ((request.prompt === undefined) === (request.document_id === undefined)) {
      throw invalidRequest("Give exactly one of 'prompt' (text) and 'document_id'.", 'prompt');
    }
    if (request.document_id !== undefined) {
      await assertDocumentOwned(this.redis, this.keys, request.document_id, tenant, 'document_id');
      return { documentId: request.document_id };
    }
    return { text: request.prompt ?? '' };
  }

  /**
   * Waits for a job's result by following its stream. A client that goes away cancels the job.
   */
  async awaitResult<N extends JobName>(
    name: N,
    jobId: string,
    tenant: string,
    signal: AbortSignal,
  ) {
    const record = await this.jobs.record(jobId, tenant);
    const follow = followJobStream(this.readers, this.keys, jobId, {
      after: '0',
      seen: new Set(),
      signal,
      hasEnded: () => this.jobs.endedWithoutStream(record.model, jobId),
    });
    const collected = new StreamedChoices();
    let done: DoneEvent | undefined;
    for await (const { event } of follow) {
      if (event.type === 'failed') throw jobFailed(event.message);
      if (event.type === 'done') done = event;
      collected.add(event);
    }
    if (done === undefined) {
      // The client went away before the job finished.
      await this.jobs.cancel(jobId, record);
      return undefined;
    }
    return resultFromStream(name, record, done, {
      redis: this.redis,
      keys: this.keys,
      jobId,
      collected,
    });
  }

  async get(jobId: string, tenant: string) {
    const record = await this.jobs.record(jobId, tenant);
    return this.present(jobId, record);
  }

  async cancel(jobId: string, tenant: string) {
    const record = await this.jobs.record(jobId, tenant);
    await this.jobs.cancel(jobId, record);
    return this.present(jobId, { ...record, cancelledAt: record.cancelledAt ?? nowSeconds() });
  }

  /** The job's stream as SSE (`event: token|choice-end|progress|done|failed`), resumable. */
  async events(
    jobId: string,
    tenant: string,
    lastEventId: string,
    response: Response,
  ): Promise<void> {
    const record = await this.jobs.record(jobId, tenant);
    const seen = new Set<string>();
    if (lastEventId !== '0') await readStreamUntil(this.redis, this.keys, jobId, lastEventId, seen);
    const sse = new ServerSentEvents(response);
    try {
      const follow = followJobStream(this.readers, this.keys, jobId, {
        after: lastEventId,
        seen,
        signal: clientGone(response),
        hasEnded: () => this.jobs.endedWithoutStream(record.model, jobId),
      });
      for await (const { id, event } of follow) {
        switch (event.type) {
          case 'token':
            sse.send(
              {
                choice: event.choice,
                index: event.index,
                text: event.text,
                logprob: event.logprob,
              },
              { id, event: 'token' },
            );
            break;
          case 'choice-end':
            sse.send(
              { choice: event.choice, finish_reason: event.finishReason, text: event.text },
              { id, event: 'choice-end' },
            );
            break;
          case 'progress':
            sse.send(
              {
                prompt_tokens_done: event.promptTokensDone,
                prompt_tokens_total: event.promptTokensTotal,
              },
              { id, event: 'progress' },
            );
            break;
          case 'done':
            sse.send(await this.present(jobId, record, { id, event }), { id, event: 'done' });
            break;
          case 'failed':
            sse.send({ message: event.message }, { id, event: 'failed' });
            break;
        }
      }
    } finally {
      sse.end();
    }
  }

  /**
   * The job as the API shows it. Whether and how it ended comes from its stream (`ending`, when
   * the caller just read it), which the worker ends before BullMQ records the job as finished;
   * BullMQ tells the rest (queued or running, progress, start time).
   */
  private async present(jobId: string, record: GatewayJobRecord, ending?: StreamEnd) {
    const job = await this.jobs.job(record.model, jobId);
    if (job === undefined) throw notFound('job', jobId);
    const end = ending ?? (await readStreamEnd(this.redis, this.keys, jobId));
    const state = await job.getState();
    const cancelled = record.cancelledAt !== undefined;
    let status: JobStatus;
    if (end?.event.type === 'done') status = cancelled ? 'cancelled' : 'completed';
    else if (end?.event.type === 'failed' || state === 'failed') {
      status = cancelled ? 'cancelled' : 'failed';
    } else if (state === 'active') status = 'running';
    else status = 'queued';
    const finished = status !== 'queued' && status !== 'running';
    const progress = jobProgressSchema.safeParse(job.progress);
    const p = progress.success ? progress.data : undefined;
    let eta: number | null = null;
    if (finished) eta = 0;
    else if (p !== undefined && job.processedOn !== undefined) {
      const done = p.promptTokensDone + p.completionTokens;
      const total = p.promptTokensTotal + record.maxOutputTokens;
      const elapsed = (Date.now() - job.processedOn) / 1000;
      if (done > 0 && elapsed > 0) eta = Math.max(0, Math.round(((total - done) * elapsed) / done));
    }
    return {
      id: jobId,
      object: 'job' as const,
      type: record.type,
      model: record.model,
      status,
      created_at: record.created,
      started_at: job.processedOn === undefined ? null : Math.floor(job.processedOn / 1000),
      finished_at: finished
        ? Math.floor((job.finishedOn ?? streamEntryTime(end?.id)) / 1000)
        : null,
      progress:
        p === undefined
          ? null
          : {
              phase: p.phase,
              prompt_tokens_done: p.promptTokensDone,
              prompt_tokens_total: p.promptTokensTotal,
              completion_tokens: p.completionTokens,
            },
      eta_seconds: eta,
      worker: p?.worker ?? null,
      result:
        end?.event.type === 'done'
          ? presentResult(
              record.type,
              await resultFromStream(record.type, record, end.event, {
                redis: this.redis,
                keys: this.keys,
                jobId,
              }),
            )
          : null,
      error:
        end?.event.type === 'failed'
          ? { message: end.event.message }
          : state === 'failed' && end === undefined
            ? { message: job.failedReason }
            : null,
    };
  }
}

function presentResult(type: GatewayJobRecord['type'], value: unknown) {
  switch (type) {
    case 'generate': {
      const result = jobResultSchemas.generate.parse(value);
      return {
        choices: result.choices.map((choice) => ({
          index: choice.index,
          text: choice.text,
          finish_reason: choice.finishReason,
          logprobs: choice.logprobs ?? null,
        })),
        usage: openAiUsage(result.usage),
      };
    }
    case 'score': {
      const result = jobResultSchemas.score.parse(value);
      return {
        tokens: result.tokens,
        total_nll: result.totalNll,
        perplexity: result.perplexity,
        windows: result.windows,
        ...(result.tokenLogprobs === undefined ? {} : { token_logprobs: result.tokenLogprobs }),
      };
    }
    case 'digest': {
      const result = jobResultSchemas.digest.parse(value);
      return {
        state_id: result.stateId,
        model: result.model,
        position: result.position,
        expires_at: Math.floor(Date.parse(result.expiresAt) / 1000),
      };
    }
  }
}
