import type { Job, JobState } from 'bullmq';
import { jobProgressSchema, type GatewayJobRecord, type JobName, type JobResult } from '#contracts';
import { openAiUsage } from '../completions/openai-format.js';
import type { JobBody, JobResultBody } from '../docs/response-schemas.js';
import type { StreamEnd } from '../streams/job-streams.js';

type JobStatus = JobBody['status'];

/** Milliseconds since the epoch at which a Redis stream entry was added (its id's first part). */
function streamEntryTime(id: string | undefined): number {
  return id === undefined ? Date.now() : Number(id.split('-')[0]);
}

/** What a job's view is made of: its gateway record, its BullMQ job, and its stream's end. */
export interface JobFacts {
  jobId: string;
  record: GatewayJobRecord;
  /** Absent once BullMQ has removed the finished job (its stream may still tell its end). */
  job: Job | undefined;
  state: JobState | 'unknown';
  end: StreamEnd | undefined;
  /** The presented result, when the stream ended with `done`. */
  result: JobResultBody | null;
  /** Why the result of a `done` job could not be built. */
  resultError?: string | undefined;
}

/**
 * The job as `/v1/jobs` shows it: the status from how its stream ended (a cancel turns an ending
 * into `cancelled`), else from BullMQ's state; progress and an ETA from its latest progress. A
 * job BullMQ completed whose stream has expired (a day after it ended) is completed without a
 * result.
 */
export function jobView(facts: JobFacts): JobBody {
  const { jobId, record, job, state, end, result, resultError } = facts;
  const cancelled = record.cancelledAt !== undefined;
  let status: JobStatus;
  if (resultError !== undefined) status = 'failed';
  else if (end?.event.type === 'done' || state === 'completed') {
    status = cancelled ? 'cancelled' : 'completed';
  } else if (end?.event.type === 'failed' || state === 'failed') {
    status = cancelled ? 'cancelled' : 'failed';
  } else if (state === 'active') status = 'running';
  else status = 'queued';
  const finished = status !== 'queued' && status !== 'running';
  const progress = jobProgressSchema.safeParse(job?.progress);
  const p = progress.success ? progress.data : undefined;
  let eta: number | null = null;
  if (finished) eta = 0;
  else if (p !== undefined && job?.processedOn !== undefined) {
    const done = p.promptTokensDone + p.completionTokens;
    const total = p.promptTokensTotal + record.maxOutputTokens;
    const elapsed = (Date.now() - job.processedOn) / 1000;
    if (done > 0 && elapsed > 0) eta = Math.max(0, Math.round(((total - done) * elapsed) / done));
  }
  return {
    id: jobId,
    object: 'job',
    type: record.type,
    model: record.model,
    status,
    created_at: record.created,
    started_at: job?.processedOn === undefined ? null : Math.floor(job.processedOn / 1000),
    finished_at: finished ? Math.floor((job?.finishedOn ?? streamEntryTime(end?.id)) / 1000) : null,
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
    result,
    error:
      resultError !== undefined
        ? { message: resultError }
        : end?.event.type === 'failed'
          ? { message: end.event.message }
          : state === 'failed' && end === undefined
            ? { message: job?.failedReason ?? 'the job failed' }
            : null,
  };
}

/** A finished job's result with its job name, as the stream gave it (already validated). */
export type NamedResult = { [N in JobName]: { type: N; result: JobResult<N> } }[JobName];

/** A finished job's result as the API shows it (snake_case, OpenAI's usage). */
export function presentResult(named: NamedResult): JobResultBody {
  switch (named.type) {
    case 'generate': {
      const { result } = named;
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
      const { result } = named;
      return {
        tokens: result.tokens,
        total_nll: result.totalNll,
        perplexity: result.perplexity,
        windows: result.windows,
        ...(result.tokenLogprobs === undefined ? {} : { token_logprobs: result.tokenLogprobs }),
      };
    }
    case 'digest': {
      const { result } = named;
      return {
        state_id: result.stateId,
        model: result.model,
        position: result.position,
        expires_at: Math.floor(Date.parse(result.expiresAt) / 1000),
      };
    }
  }
}
