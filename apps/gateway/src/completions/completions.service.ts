import type { Response } from 'express';
import { JobName, JobPriority, type GatewayJobRecord, type Usage } from '#contracts';
import { StreamedChoices, type DoneEvent, type Logger } from '#cluster';
import { invalidRequest, jobFailed, notFound } from '../common/api-error.js';
import { ServerSentEvents, clientGone } from '../common/sse.js';
import type { JobQueues } from '../jobs/job-queues.js';
import { newId } from '../jobs/job-queues.js';
import type { GatewayMetrics } from '../metrics/gateway-metrics.js';
import type { ModelsService } from '../models/models.service.js';
import type { StateStore } from '../states/state-store.js';
import type { JobStreams } from '../streams/job-streams.js';
import type { ChatPrompts } from './chat-template.js';
import {
  ChunkWriter,
  chatResponse,
  completionResponse,
  type ResponseMeta,
} from './openai-format.js';
import { mapRequest, type CompletionKind } from './request-mapping.js';

/**
 * A streamed completion whose client went away is cancelled unless a client reconnects (with
 * `Last-Event-ID`) within this time. @defaultValue 2000 ms
 */
export const RECONNECT_GRACE_MS = 2000;

export interface CompletionDependencies {
  jobs: JobQueues;
  models: ModelsService;
  chatPrompts: ChatPrompts;
  states: StateStore;
  streams: JobStreams;
  metrics: GatewayMetrics;
  logger: Logger;
}

/** Token arrival times of one response, for time-to-first-token and time-per-output-token. */
class TokenTiming {
  private first: number | undefined;
  private last = 0;
  count = 0;

  constructor(private readonly submittedAt: number) {}

  token(): void {
    const now = performance.now();
    this.first ??= now;
    this.last = now;
    this.count += 1;
  }

  observe(metrics: GatewayMetrics, model: string): void {
    if (this.first === undefined) return;
    metrics.timeToFirstToken.observe({ model }, (this.first - this.submittedAt) / 1000);
    if (this.count > 1) {
      metrics.timePerOutputToken.observe(
        { model },
        (this.last - this.first) / 1000 / (this.count - 1),
      );
    }
  }
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/** `/v1/completions` and `/v1/chat/completions`: submit a generate job, then answer or stream it. */
export class CompletionsService {
  constructor(private readonly deps: CompletionDependencies) {}

  async create(
    kind: CompletionKind,
    body: unknown,
    tenant: string,
    response: Response,
  ): Promise<void> {
    const { jobs, models, states, chatPrompts } = this.deps;
    const signal = clientGone(response);
    const request = await mapRequest(kind, body, tenant, chatPrompts, (model) =>
      models.awaitWorker(model, signal),
    );
    if (request.stateId !== undefined) {
      const state = await states.get(request.stateId, tenant, 'state_id');
      if (state.model !== request.model) {
        throw invalidRequest(
          `The state '${request.stateId}' belongs to model '${state.model}', not '${request.model}'.`,
          'state_id',
        );
      }
    }
    const jobId = newId(kind === 'chat' ? 'chatcmpl-' : 'cmpl-');
    const record: GatewayJobRecord = {
      owner: tenant,
      kind,
      type: JobName.Generate,
      model: request.model,
      created: nowSeconds(),
      includeUsage: request.includeUsage,
      logprobs: request.logprobs,
      choices: request.n,
      maxOutputTokens: request.maxTokens * request.n,
    };
    const timing = new TokenTiming(performance.now());
    await jobs.submit({
      jobId,
      name: JobName.Generate,
      payload: request.payload,
      priority: JobPriority.Interactive,
      record,
    });
    if (request.stream) {
      await this.stream(jobId, record, response, '0', signal, timing);
    } else {
      await this.respond(jobId, record, response, signal, timing);
    }
  }

  /** Continues a streamed completion after `lastEventId` (an SSE `Last-Event-ID`). */
  async resume(
    kind: CompletionKind,
    jobId: string,
    tenant: string,
    lastEventId: string,
    response: Response,
  ): Promise<void> {
    const record = await this.deps.jobs.record(jobId, tenant, 'completion');
    if (record.kind !== kind) throw notFound('completion', jobId);
    await this.stream(jobId, record, response, lastEventId, clientGone(response), undefined);
  }

  private async respond(
    jobId: string,
    record: GatewayJobRecord,
    response: Response,
    signal: AbortSignal,
    timing: TokenTiming,
  ): Promise<void> {
    const { jobs, streams } = this.deps;
    const follow = streams.follow(jobId, {
      after: '0',
      seen: new Set(),
      signal,
      hasEnded: () => jobs.endedWithoutStream(record.model, jobId),
    });
    const collected = new StreamedChoices();
    let done: DoneEvent | undefined;
    for await (const { event } of follow) {
      if (event.type === 'token') timing.token();
      if (event.type === 'failed') throw jobFailed(event.message);
      if (event.type === 'done') done = event;
      collected.add(event);
    }
    if (done === undefined) {
      // The client went away: nobody will read the answer, so stop spending compute on it.
      await jobs.cancel(jobId, record);
      return;
    }
    const result = await streams.result(JobName.Generate, record, done, jobId, collected);
    this.account(record, result.usage, timing);
    const meta: ResponseMeta = { id: jobId, model: record.model, created: record.created };
    response.json(
      record.kind === 'chat' ? chatResponse(meta, result) : completionResponse(meta, result),
    );
  }

  private async stream(
    jobId: string,
    record: GatewayJobRecord,
    response: Response,
    after: string,
    signal: AbortSignal,
    timing: TokenTiming | undefined,
  ): Promise<void> {
    const { jobs, streams, logger } = this.deps;
    const kind = record.kind === 'chat' ? 'chat' : 'completion';
    const writer = new ChunkWriter(
      kind,
      { id: jobId, model: record.model, created: record.created },
      record.includeUsage,
    );
    const withLogprobs = record.logprobs;
    const seen = new Set<string>();
    /** Characters of each choice's text sent so far (legacy logprobs' text_offset). */
    const offsets = new Map<number, number>();
    const ended = new Set<number>();
    // The stream is complete once [DONE] (or an error) was sent; otherwise the client left early.
    let complete = false;
    await jobs.countReader(jobId, 1);
    const sse = new ServerSentEvents(response);
    try {
      if (after === '0') {
        if (kind === 'chat') {
          for (let choice = 0; choice < record.choices; choice += 1)
            await sse.send(writer.roleChunk(choice));
        }
      } else {
        for (const { event } of await streams.readUntil(jobId, after, seen)) {
          if (event.type === 'token') {
            offsets.set(event.choice, (offsets.get(event.choice) ?? 0) + event.text.length);
          }
          if (event.type === 'choice-end') ended.add(event.choice);
        }
      }
      const follow = streams.follow(jobId, {
        after,
        seen,
        signal,
        hasEnded: () => jobs.endedWithoutStream(record.model, jobId),
      });
      for await (const { id, event } of follow) {
        switch (event.type) {
          case 'token': {
            timing?.token();
            if (event.text === '' && !withLogprobs) break;
            const offset = offsets.get(event.choice) ?? 0;
            const logprob = withLogprobs
              ? { text: event.text, logprob: event.logprob, top: event.top ?? [] }
              : undefined;
            await sse.send(writer.textChunk(event.choice, event.text, logprob, offset), { id });
            offsets.set(event.choice, offset + event.text.length);
            break;
          }
          case 'choice-end':
            ended.add(event.choice);
            await sse.send(
              writer.textChunk(
                event.choice,
                event.text,
                undefined,
                offsets.get(event.choice) ?? 0,
                event.finishReason,
              ),
              { id },
            );
            break;
          case 'progress':
            break;
          case 'failed':
            await sse.send(jobFailed(event.message).body, { id });
            complete = true;
            break;
          case 'done': {
            const unended = firstUnended(ended, record.choices);
            if (unended !== undefined) {
              // An incomplete stream is an error, never a choice that silently "stopped".
              await sse.send(jobFailed(`choice ${unended} has no end entry`).body, { id });
            } else {
              if (timing !== undefined) this.account(record, event.usage, timing);
              if (record.includeUsage) await sse.send(writer.usageChunk(event.usage), { id });
              await sse.send('[DONE]', { id });
            }
            complete = true;
            break;
          }
        }
      }
    } finally {
      sse.end();
      // Bookkeeping that fails (Redis unreachable) must not replace why the stream ended.
      const readersLeft = await jobs.countReader(jobId, -1).catch((error: unknown) => {
        logger.warn({ err: error, jobId }, 'could not count a stream reader out');
        return undefined;
      });
      if (!complete && readersLeft !== undefined && readersLeft <= 0) {
        this.cancelUnlessReconnected(jobId, record);
      }
    }
  }

  /** Client disconnect cancels the job, unless a client reconnects within the grace time. */
  private cancelUnlessReconnected(jobId: string, record: GatewayJobRecord): void {
    const { jobs, logger } = this.deps;
    setTimeout(() => {
      void (async () => {
        if ((await jobs.readerCount(jobId)) > 0) return;
        const job = await jobs.job(record.model, jobId);
        if (job?.finishedOn !== undefined) return;
        await jobs.cancel(jobId, record);
        logger.info({ jobId }, 'client went away: job cancelled');
      })().catch((error: unknown) => {
        logger.warn({ err: error, jobId }, 'could not cancel an abandoned job');
      });
    }, RECONNECT_GRACE_MS).unref();
  }

  /** Token and timing metrics of a finished completion (its tokens were charged by the worker). */
  private account(record: GatewayJobRecord, usage: Usage, timing: TokenTiming): void {
    const { metrics } = this.deps;
    metrics.completionTokens.inc({ model: record.model }, usage.completionTokens);
    metrics.promptTokens.inc({ model: record.model }, usage.promptTokens);
    timing.observe(metrics, record.model);
  }
}

/** The lowest choice index below `choices` that has not ended, if any. */
function firstUnended(ended: ReadonlySet<number>, choices: number): number | undefined {
  for (let choice = 0; choice < choices; choice += 1) if (!ended.has(choice)) return choice;
  return undefined;
}
