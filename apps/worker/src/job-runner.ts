import { createHash, randomUUID } from 'node:crypto';
import { UnrecoverableError, WaitingError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  InvalidJobError,
  JobName,
  jobPriorityOf,
  parseModelJob,
  type ModelJob,
  type DigestResult,
  type GenerateResult,
  type JobPayload,
  type JobProgress,
  type RedisKeys,
  type ScoreResult,
  type StreamEvent,
  type TextSource,
  type WorkerRecord,
} from '#contracts';
import {
  appendStreamEvents,
  chargeTenantTokens,
  isCancelRequested,
  loadSavedState,
  readStreamedChoices,
  saveState,
  StreamBatcher,
  type CheckpointStore,
  type Logger,
  type PrefixCache,
  type PrefixClaimant,
} from '#cluster';
import {
  summarizeScore,
  type CheckpointPolicy,
  type Engine,
  type SamplingParams,
  type SequenceEvent,
  type SequenceOutcome,
  type SequenceRequest,
  type SequenceStart,
  type Tokenized,
} from '#engine';

export interface RunnerSettings {
  checkpointEveryTokens: number;
  checkpointEveryMs: number;
  checkpointPrefillEveryTokens: number;
  prefixBlockTokens: number;
}

export interface ModelRuntime {
  engine: Engine;
  prefixCache: PrefixCache;
}

/** The prefix cache as one sequence uses it: looking up, claiming and storing shared prefixes. */
interface SharedPrefixes {
  cache: PrefixCache;
  claimant: PrefixClaimant;
}

/** What every job kind's run needs: the job, its text, the model and bookkeeping. */
interface JobContext {
  job: Job;
  jobId: string;
  /** BullMQ's lock token, needed to hand the job back. */
  token: string | undefined;
  text: string;
  runtime: ModelRuntime;
  /** Engine sequence ids of this job (for cancellation and suspension). */
  sequences: Set<string>;
  progress: ProgressReporter;
}

/** Progress is written to BullMQ at most this often per job. @defaultValue 1000 ms */
const PROGRESS_INTERVAL_MS = 1000;

/**
 * Runs BullMQ jobs on an engine: validates the payload again (the gateway is not the only
 * producer), resumes from checkpoints and the job's stream, streams every token, checkpoints,
 * and hands the job back to the queue when the worker shuts down.
 */
export class JobRunner {
  /** Engine sequence ids of each running job, for cancellation and suspension. */
  private readonly running = new Map<
    string,
    { engine: Engine; sequences: Set<string>; cancelled: boolean }
  >();
  private draining = false;
  /** Tokens of all running sequences, written with one round trip per engine tick. */
  private readonly tokens: StreamBatcher;
  /** Jobs whose lock this worker lost (another worker owns them now): write nothing more. */
  private readonly abandoned = new Set<string>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly checkpoints: CheckpointStore,
    private readonly settings: RunnerSettings,
    private readonly worker: Pick<WorkerRecord, 'id' | 'host' | 'pid'>,
    private readonly logger: Logger,
  ) {
    this.tokens = new StreamBatcher(redis, keys);
  }

  get activeJobs(): number {
    return this.running.size;
  }

  /** Stops the job's sequences within one engine tick; they finish as cancelled. */
  cancel(jobId: string): void {
    const entry = this.running.get(jobId);
    if (entry === undefined) return;
    // Sequences submitted after this moment are cancelled as they start (see startFor).
    entry.cancelled = true;
    for (const sequence of entry.sequences) entry.engine.cancel(sequence);
  }

  /**
   * BullMQ could not renew these jobs' locks: they were given to another worker (this one was
   * cut off, or stalled). Stop their sequences and write nothing more for them — no tokens,
   * checkpoints or completion — so the new owner's work is never disturbed.
   */
  abandon(jobIds: readonly string[]): void {
    for (const jobId of jobIds) {
      const entry = this.running.get(jobId);
      if (entry === undefined || this.abandoned.has(jobId)) continue;
      this.abandoned.add(jobId);
      for (const sequence of entry.sequences) entry.engine.cancel(sequence);
      this.logger.warn({ jobId }, 'lost the job lock to another worker; abandoning the job');
    }
  }

  /** Shutdown: checkpoint every running sequence and hand its job back to the queue. */
  suspendAll(): void {
    this.draining = true;
    for (const { engine, sequences } of this.running.values()) {
      for (const sequence of sequences) engine.suspend(sequence);
    }
  }

  async process(job: Job, token: string | undefined, runtime: ModelRuntime): Promise<unknown> {
    const jobId = job.id;
    if (jobId === undefined) throw new UnrecoverableError('job has no id');
    if (this.draining) return this.handBack(job, token);
    let item: ModelJob;
    try {
      item = parseModelJob(job.name, job.data);
    } catch (error) {
      if (error instanceof InvalidJobError) throw new UnrecoverableError(error.message);
      throw error;
    }
    const name = item.name;
    const parsed = { data: item.data };
    const entry = { engine: runtime.engine, sequences: new Set<string>(), cancelled: false };
    this.running.set(jobId, entry);
    const progress = new ProgressReporter(job, this.worker);
    try {
      if (await isCancelRequested(this.redis, this.keys, jobId)) {
        return await this.finishCancelledBeforeStart(jobId, name, parsed.data);
      }
      await progress.report('prefill', 0, 0, 0, true);
      const context: JobContext = {
        job,
        jobId,
        token,
        text: await this.readText(parsed.data.input),
        runtime,
        sequences: entry.sequences,
        progress,
      };
      switch (name) {
        case JobName.Generate:
          return await this.generate(context, parsed.data as JobPayload<'generate'>);
        case JobName.Score:
          return await this.score(context, parsed.data as JobPayload<'score'>);
        case JobName.Digest:
          return await this.digest(context, parsed.data as JobPayload<'digest'>);
      }
    } catch (error) {
      if (error instanceof WaitingError || this.abandoned.has(jobId)) throw error;
      // Readers stop at a `failed` event, so it is written only when BullMQ will not retry.
      const finalAttempt =
        error instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      if (!finalAttempt) throw error;
      const message = error instanceof Error ? error.message : String(error);
      await appendStreamEvents(this.redis, this.keys, jobId, [{ type: 'failed', message }]).catch(
        (streamError: unknown) => {
          this.logger.warn({ err: streamError, jobId }, 'could not append the failure event');
        },
      );
      throw error;
    } finally {
      this.running.delete(jobId);
      this.abandoned.delete(jobId);
    }
  }

  private async generate(
    context: JobContext,
    payload: JobPayload<'generate'>,
  ): Promise<GenerateResult> {
    const { jobId, text, runtime, sequences, progress, job, token } = context;
    const streamed = await readStreamedChoices(this.redis, this.keys, jobId);
    const saved =
      payload.stateId === undefined
        ? undefined
        : await this.loadOwnedState(payload.stateId, payload.owner, payload.model);
    const sampling = toSamplingParams(payload.sampling, jobId);
    const outcomes = await Promise.all(
      Array.from({ length: payload.n }, async (_unused, choice) => {
        const already = streamed.get(choice);
        if (already?.end !== undefined) return undefined;
        const replay = (already?.tokens ?? []).map((event) => event.token);
        const sequenceId = `${jobId}:${choice}`;
        sequences.add(sequenceId);
        const claimant: PrefixClaimant = {
          id: `${sequenceId}:${randomUUID()}`,
          stopWaiting: () =>
            this.draining ||
            this.abandoned.has(jobId) ||
            this.running.get(jobId)?.cancelled === true,
        };
        const request: SequenceRequest = {
          id: sequenceId,
          kind: 'generate',
          priority: jobPriorityOf(job.opts.priority),
          text,
          // A saved state's prefix hashes would not describe the tokens before it.
          prefixBlockTokens: saved === undefined ? this.settings.prefixBlockTokens : 0,
          generate: {
            sampling,
            choice,
            maxTokens: payload.sampling.max_tokens,
            stop: payload.sampling.stop,
          },
          checkpoint: this.checkpointPolicy(),
        };
        try {
          return await runtime.engine.run(request, {
            start: (tokenized) =>
              this.startFor(jobId, choice, tokenized, replay, saved, {
                cache: runtime.prefixCache,
                claimant,
              }),
            onEvent: (event) =>
              this.onEvent(
                jobId,
                choice,
                event,
                { cache: runtime.prefixCache, claimant },
                progress,
                true,
              ),
          });
        } finally {
          // Claims still held (the sequence ended before reaching them) would expire anyway:
          // failing to give them back early must not fail the job.
          await runtime.prefixCache.releaseClaims(claimant.id).catch((error: unknown) => {
            this.logger.warn({ err: error, jobId }, 'prefix claims not released; they will expire');
          });
        }
      }),
    );
    await this.handBackIfSuspended(outcomes, job, token);
    const finished = outcomes.filter(isFinished);
    const choices = await readStreamedChoices(this.redis, this.keys, jobId);
    const wantLogprobs = payload.sampling.logprobs !== undefined;
    const result: GenerateResult = {
      choices: Array.from({ length: payload.n }, (_unused, index) => {
        const choice = choices.get(index);
        const tokens = choice?.tokens ?? [];
        return {
          index,
          text: tokens.map((event) => event.text).join('') + (choice?.end?.text ?? ''),
          finishReason: choice?.end?.finishReason ?? 'stop',
          ...(wantLogprobs
            ? {
                logprobs: tokens.map((event) => ({
                  text: event.text,
                  logprob: event.logprob,
                  top: event.top ?? [],
                })),
              }
            : {}),
        };
      }),
      usage: {
        promptTokens: finished[0]?.promptTokens ?? 0,
        completionTokens: [...choices.values()].reduce(
          (sum, choice) => sum + choice.tokens.length,
          0,
        ),
        cachedTokens: finished[0]?.cachedTokens ?? 0,
      },
    };
    await this.complete(jobId, payload.n, {
      owner: payload.owner,
      tokens: result.usage.promptTokens + result.usage.completionTokens,
    });
    return result;
  }

  private async score(context: JobContext, payload: JobPayload<'score'>): Promise<ScoreResult> {
    const { jobId, text, runtime, sequences, progress, job, token } = context;
    const sequenceId = `${jobId}:0`;
    sequences.add(sequenceId);
    const outcome = await runtime.engine.run(
      {
        id: sequenceId,
        kind: 'score',
        priority: jobPriorityOf(job.opts.priority),
        text,
        prefixBlockTokens: 0,
        score: { windowTokens: payload.windowTokens },
        checkpoint: this.checkpointPolicy(),
      },
      {
        start: (tokenized) => this.startFor(jobId, 0, tokenized, [], undefined, undefined),
        onEvent: (event) => this.onEvent(jobId, 0, event, undefined, progress, false),
      },
    );
    await this.handBackIfSuspended([outcome], job, token);
    if (!isFinished(outcome)) throw new Error('unreachable: suspended outcome handed back');
    if (outcome.finishReason === 'cancelled') throw new UnrecoverableError('cancelled by request');
    const summary = summarizeScore(outcome.logprobs ?? new Float64Array(), payload.windowTokens);
    await this.complete(jobId, 1, { owner: payload.owner, tokens: summary.tokens });
    return {
      ...summary,
      ...(payload.tokenLogprobs ? { tokenLogprobs: Array.from(outcome.logprobs ?? []) } : {}),
    };
  }

  private async digest(context: JobContext, payload: JobPayload<'digest'>): Promise<DigestResult> {
    const { jobId, text, runtime, sequences, progress, job, token } = context;
    const saved =
      payload.stateId === undefined
        ? undefined
        : await this.loadOwnedState(payload.stateId, payload.owner, payload.model);
    const sequenceId = `${jobId}:0`;
    sequences.add(sequenceId);
    const outcome = await runtime.engine.run(
      {
        id: sequenceId,
        kind: 'digest',
        priority: jobPriorityOf(job.opts.priority),
        text,
        prefixBlockTokens: 0,
        checkpoint: this.checkpointPolicy(),
      },
      {
        start: (tokenized) => this.startFor(jobId, 0, tokenized, [], saved, undefined),
        onEvent: (event) => this.onEvent(jobId, 0, event, undefined, progress, false),
      },
    );
    await this.handBackIfSuspended([outcome], job, token);
    if (!isFinished(outcome)) throw new Error('unreachable: suspended outcome handed back');
    if (outcome.finishReason === 'cancelled') throw new UnrecoverableError('cancelled by request');
    if (outcome.state === undefined) throw new Error('the engine returned no state');
    const stateId = `state_${randomUUID().replaceAll('-', '')}`;
    const now = new Date();
    const expiresAt = new Date(now.getTime() + payload.stateTtlSeconds * 1000).toISOString();
    await saveState(
      this.redis,
      this.keys,
      stateId,
      Buffer.from(outcome.state),
      {
        model: payload.model,
        owner: payload.owner,
        position: outcome.position,
        createdAt: now.toISOString(),
        expiresAt,
      },
      payload.stateTtlSeconds,
    );
    await this.complete(jobId, 1, { owner: payload.owner, tokens: outcome.promptTokens });
    return { stateId, model: payload.model, position: outcome.position, expiresAt };
  }

  /**
   * Where a sequence starts: its own checkpoint (a resumed job), else the longest cached prompt
   * prefix, else a saved state, else nothing. Tokens already in the stream are replayed.
   */
  private async startFor(
    jobId: string,
    choice: number,
    tokenized: Tokenized,
    replay: readonly number[],
    saved: { state: Buffer; position: number } | undefined,
    prefixes: SharedPrefixes | undefined,
  ): Promise<SequenceStart> {
    const stopIfCancelled = (): void => {
      const entry = this.running.get(jobId);
      if (entry?.cancelled === true) entry.engine.cancel(tokenized.id);
    };
    // A cancellation that arrived before this sequence existed: stop it at its first tick.
    stopIfCancelled();
    const checkpoint = await this.checkpoints.load(jobId, choice);
    // A checkpoint is usable when the tokens it holds are all still known (input + replay).
    if (checkpoint !== undefined && checkpoint.absorbed < tokenized.tokenCount + replay.length) {
      return {
        state: toArrayBuffer(checkpoint.state),
        position: checkpoint.position,
        skip: checkpoint.absorbed,
        replay,
        ...(checkpoint.logprobs === undefined ? {} : { priorLogprobs: checkpoint.logprobs }),
      };
    }
    const base = saved?.position ?? 0;
    const hit = await prefixes?.cache.lookup(tokenized.prefixes, prefixes.claimant);
    // Or one that arrived while it waited for another sequence's shared prefix.
    if (prefixes !== undefined) stopIfCancelled();
    if (hit !== undefined) {
      return {
        state: toArrayBuffer(hit.state),
        position: base + hit.tokens,
        skip: hit.tokens,
        replay,
      };
    }
    if (saved !== undefined) {
      return { state: toArrayBuffer(saved.state), position: saved.position, skip: 0, replay };
    }
    return { position: 0, skip: 0, replay };
  }

  private async onEvent(
    jobId: string,
    choice: number,
    event: SequenceEvent,
    prefixes: SharedPrefixes | undefined,
    progress: ProgressReporter,
    generating: boolean,
  ): Promise<void> {
    if (this.abandoned.has(jobId)) return;
    switch (event.type) {
      case 'token':
        await this.tokens.append(jobId, {
          type: 'token',
          choice,
          index: event.index,
          token: event.token,
          text: event.text,
          logprob: event.logprob,
          ...(event.top === undefined ? {} : { top: event.top }),
        });
        await progress.tokenGenerated();
        return;
      case 'checkpoint':
        // Ordered after the tokens sampled before it: the stream always holds more tokens than
        // the checkpoint absorbed, which is what makes a resume exact.
        await this.checkpoints.save(jobId, choice, {
          state: Buffer.from(event.state),
          position: event.position,
          absorbed: event.absorbed,
          ...(event.logprobs === undefined
            ? {}
            : { logprobs: event.logprobs, logprobsOffset: event.logprobsOffset ?? 0 }),
        });
        return;
      case 'prefix-state':
        await prefixes?.cache.store(event.hash, Buffer.from(event.state), prefixes.claimant.id);
        return;
      case 'progress':
        // Each prefill chunk brings a claimed prefix closer: the sequences waiting for it wait on.
        await prefixes?.cache.renewClaims(prefixes.claimant.id);
        await progress.prefill(event.done, event.total, async (done, total) => {
          await appendStreamEvents(this.redis, this.keys, jobId, [
            { type: 'progress', promptTokensDone: done, promptTokensTotal: total },
          ]);
        });
        return;
      case 'finished':
        if (generating) await this.appendChoiceEnd(jobId, choice, event);
        return;
      case 'tokenized':
      case 'suspended':
      case 'failed':
        return;
    }
  }

  private async appendChoiceEnd(
    jobId: string,
    choice: number,
    event: Extract<SequenceEvent, { type: 'finished' }>,
  ): Promise<void> {
    const end: StreamEvent = {
      type: 'choice-end',
      choice,
      finishReason: event.finishReason,
      text: event.text,
    };
    await appendStreamEvents(this.redis, this.keys, jobId, [end]);
  }

  /** Ends the job's stream, charges the tokens it used to its owner and drops its checkpoints. */
  private async complete(
    jobId: string,
    choices: number,
    usage: { owner: string; tokens: number },
  ): Promise<void> {
    if (this.abandoned.has(jobId)) throw new Error(`job ${jobId} was abandoned: its lock was lost`);
    await appendStreamEvents(this.redis, this.keys, jobId, [{ type: 'done' }]);
    await chargeTenantTokens(this.redis, this.keys, jobId, usage.owner, usage.tokens);
    await this.checkpoints.deleteJob(jobId, choices);
  }

  private async finishCancelledBeforeStart(
    jobId: string,
    name: JobName,
    payload: JobPayload<JobName>,
  ): Promise<GenerateResult> {
    if (name !== JobName.Generate) throw new UnrecoverableError('cancelled by request');
    const n = (payload as JobPayload<'generate'>).n;
    await appendStreamEvents(
      this.redis,
      this.keys,
      jobId,
      Array.from({ length: n }, (_unused, choice) => ({
        type: 'choice-end' as const,
        choice,
        finishReason: 'cancelled' as const,
        text: '',
      })),
    );
    await this.complete(jobId, n, { owner: payload.owner, tokens: 0 });
    return {
      choices: Array.from({ length: n }, (_unused, index) => ({
        index,
        text: '',
        finishReason: 'cancelled' as const,
      })),
      usage: { promptTokens: 0, completionTokens: 0, cachedTokens: 0 },
    };
  }

  private async handBackIfSuspended(
    outcomes: readonly (SequenceOutcome | undefined)[],
    job: Job,
    token: string | undefined,
  ): Promise<void> {
    if (outcomes.some((outcome) => outcome?.type === 'suspended')) await this.handBack(job, token);
  }

  /** Puts the job back in its queue (the worker is stopping); another worker resumes it. */
  private async handBack(job: Job, token: string | undefined): Promise<never> {
    if (token === undefined) throw new Error('cannot hand a job back without its lock token');
    await job.moveToWait(token);
    this.logger.info({ jobId: job.id }, 'job handed back to the queue');
    throw new WaitingError();
  }

  private async readText(source: TextSource): Promise<string> {
    if ('text' in source) return source.text;
    const text = await this.redis.get(this.keys.document(source.documentId));
    if (text === null) throw new UnrecoverableError(`document ${source.documentId} does not exist`);
    return text;
  }

  private async loadOwnedState(
    stateId: string,
    owner: string,
    model: string,
  ): Promise<{ state: Buffer; position: number }> {
    const saved = await loadSavedState(this.redis, this.keys, stateId);
    if (saved?.meta.owner !== owner) {
      throw new UnrecoverableError(`state ${stateId} does not exist or has expired`);
    }
    if (saved.meta.model !== model) {
      throw new UnrecoverableError(
        `state ${stateId} belongs to model ${saved.meta.model}, not ${model}`,
      );
    }
    return { state: saved.state, position: saved.meta.position };
  }

  private checkpointPolicy(): CheckpointPolicy {
    return {
      everyTokens: this.settings.checkpointEveryTokens,
      everyMs: this.settings.checkpointEveryMs,
      prefillEveryTokens: this.settings.checkpointPrefillEveryTokens,
    };
  }
}

/** Keeps BullMQ's progress record current: phase, tokens, and which worker holds the job. */
class ProgressReporter {
  private promptTotal = 0;
  private completion = 0;
  private phase: JobProgress['phase'] = 'prefill';
  private lastWrite = 0;

  constructor(
    private readonly job: Job,
    private readonly worker: Pick<WorkerRecord, 'id' | 'host' | 'pid'>,
  ) {}

  async report(
    phase: JobProgress['phase'],
    promptDone: number,
    promptTotal: number,
    completion: number,
    force = false,
  ): Promise<void> {
    const changed = phase !== this.phase;
    this.phase = phase;
    this.promptTotal = promptTotal;
    this.completion = completion;
    const now = Date.now();
    if (!force && !changed && now - this.lastWrite < PROGRESS_INTERVAL_MS) return;
    this.lastWrite = now;
    const progress: JobProgress = {
      phase,
      promptTokensDone: promptDone,
      promptTokensTotal: promptTotal,
      completionTokens: completion,
      worker: this.worker,
      updatedAt: new Date(now).toISOString(),
    };
    await this.job.updateProgress(progress);
  }

  async prefill(
    done: number,
    total: number,
    onWrite: (done: number, total: number) => Promise<void>,
  ): Promise<void> {
    const due = Date.now() - this.lastWrite >= PROGRESS_INTERVAL_MS || done === total;
    await this.report('prefill', done, total, this.completion);
    if (due) await onWrite(done, total);
  }

  async tokenGenerated(): Promise<void> {
    await this.report('decode', this.promptTotal, this.promptTotal, this.completion + 1);
  }
}

function isFinished(
  outcome: SequenceOutcome | undefined,
): outcome is Extract<SequenceOutcome, { type: 'finished' }> {
  return outcome?.type === 'finished';
}

function toArrayBuffer(buffer: Buffer): ArrayBuffer {
  const copy = new ArrayBuffer(buffer.byteLength);
  new Uint8Array(copy).set(buffer);
  return copy;
}

export function toSamplingParams(
  sampling: JobPayload<'generate'>['sampling'],
  jobId: string,
): SamplingParams {
  return {
    temperature: sampling.temperature,
    topP: sampling.top_p,
    topK: sampling.top_k,
    minP: sampling.min_p,
    presencePenalty: sampling.presence_penalty,
    frequencyPenalty: sampling.frequency_penalty,
    repetitionPenalty: sampling.repetition_penalty,
    logitBias: new Map(
      Object.entries(sampling.logit_bias).map(([token, bias]) => [Number(token), bias]),
    ),
    topLogprobs: sampling.logprobs,
    // Without a seed the job still needs a fixed one, or a resumed job would diverge: derive it
    // from the job id, which every worker that runs the job agrees on.
    seed: sampling.seed ?? createHash('sha256').update(jobId).digest().readUInt32BE(0),
  };
}
