import type { Response } from 'express';
import {
  JobName,
  JobPriority,
  modelIdSchema,
  samplingSchema,
  type GatewayJobRecord,
  type JobPayloadInput,
  type TextSource,
} from '#contracts';
import { StreamedChoices, type DoneEvent } from '#cluster';
import {
  ApiError,
  invalidRequest,
  jobFailed,
  modelNotFound,
  notFound,
} from '../common/api-error.js';
import { page, type Page } from '../common/pagination.js';
import { ServerSentEvents, clientGone } from '../common/sse.js';
import { parseRequest } from '../common/validation.js';
import type { JobBody, JobResultBody } from '../docs/response-schemas.js';
import type { DocumentStore } from '../documents/document-store.js';
import type { ModelsService } from '../models/models.service.js';
import type { StateStore } from '../states/state-store.js';
import type { JobStreams, StreamEnd } from '../streams/job-streams.js';
import { newId, type JobQueues } from './job-queues.js';
import { jobCreateSchema, type JobCreateRequest } from './job-requests.js';
import { jobView, presentResult, type NamedResult } from './job-view.js';

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

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
    private readonly documents: DocumentStore,
    private readonly streams: JobStreams,
  ) {}

  async create(body: unknown, tenant: string): Promise<JobBody> {
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
      await this.documents.assertOwned(request.document_id, tenant, 'document_id');
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
    const follow = this.streams.follow(jobId, {
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
    return this.streams.result(name, record, done, jobId, collected);
  }

  /** A page of the tenant's jobs, newest first; jobs whose record has expired are left out. */
  async list(tenant: string, query: unknown): Promise<Page<JobBody>> {
    const { ids, hasMore } = await this.jobs.pageOfJobIds(tenant, query);
    const views = await Promise.all(
      ids.map(async (jobId) => {
        try {
          return await this.get(jobId, tenant);
        } catch (error) {
          if (error instanceof ApiError && error.status === 404) return undefined;
          throw error;
        }
      }),
    );
    return page(
      views.filter((view) => view !== undefined),
      hasMore,
    );
  }

  async get(jobId: string, tenant: string): Promise<JobBody> {
    const record = await this.jobs.record(jobId, tenant);
    return this.present(jobId, record);
  }

  async cancel(jobId: string, tenant: string): Promise<JobBody> {
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
    if (lastEventId !== '0') await this.streams.readUntil(jobId, lastEventId, seen);
    const sse = new ServerSentEvents(response);
    try {
      const follow = this.streams.follow(jobId, {
        after: lastEventId,
        seen,
        signal: clientGone(response),
        hasEnded: () => this.jobs.endedWithoutStream(record.model, jobId),
      });
      for await (const { id, event } of follow) {
        switch (event.type) {
          case 'token':
            await sse.send(
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
            await sse.send(
              { choice: event.choice, finish_reason: event.finishReason, text: event.text },
              { id, event: 'choice-end' },
            );
            break;
          case 'progress':
            await sse.send(
              {
                prompt_tokens_done: event.promptTokensDone,
                prompt_tokens_total: event.promptTokensTotal,
              },
              { id, event: 'progress' },
            );
            break;
          case 'done':
            await sse.send(await this.present(jobId, record, { id, event }), { id, event: 'done' });
            break;
          case 'failed':
            await sse.send({ message: event.message }, { id, event: 'failed' });
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
   * BullMQ tells the rest (queued or running, progress, start time) while it keeps the job. A
   * result that cannot be built (its stream is incomplete, or its result key expired) is shown
   * as the job's error rather than failing the request.
   */
  private async present(
    jobId: string,
    record: GatewayJobRecord,
    ending?: StreamEnd,
  ): Promise<JobBody> {
    const job = await this.jobs.job(record.model, jobId);
    const end = ending ?? (await this.streams.end(jobId));
    if (job === undefined && end === undefined) throw notFound('job', jobId);
    const state = job === undefined ? 'unknown' : await job.getState();
    let result: JobResultBody | null = null;
    let resultError: string | undefined;
    if (end?.event.type === 'done') {
      try {
        const named = {
          type: record.type,
          result: await this.streams.result(record.type, record, end.event, jobId),
        };
        // The pairing of name and result holds by construction; TypeScript cannot relate them.
        result = presentResult(named as NamedResult);
      } catch (error) {
        resultError = error instanceof Error ? error.message : String(error);
      }
    }
    return jobView({ jobId, record, job, state, end, result, resultError });
  }
}
