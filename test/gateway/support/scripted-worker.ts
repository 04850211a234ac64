import { hostname } from 'node:os';
import { Worker, type Job } from 'bullmq';
import {
  JobName,
  jobPayloadSchemas,
  modelQueueName,
  redisKeys,
  type GenerateResult,
  type RedisKeys,
} from '#contracts';
import {
  appendDone,
  appendStreamEvents,
  type ProgressStreamEvent,
  chargeTenantTokens,
  connectRedisOrFail,
  createLogger,
  createRedis,
  isCancelRequested,
  WorkerRegistry,
  workerOptions,
} from '#cluster';

/**
 * A stand-in for a worker that speaks the gateway ↔ worker contract (queue, job payloads, stream
 * events, results, cancellation, saved-state metadata, token charges) with a scripted "model"
 * whose output is known in advance: choice c of a prompt yields tokens `expectedToken(c, i)`. It lets the
 * gateway's own behaviour (SSE framing, reconnects, cancellation, batches) be tested exactly and
 * fast; tests with real worker processes check the same paths end to end.
 */
export const expectedToken = (choice: number, index: number): string => `c${choice}t${index} `;

/** The text the scripted model produces for `maxTokens` tokens of one choice. */
export const expectedText = (choice: number, maxTokens: number): string =>
  Array.from({ length: maxTokens }, (_, index) => expectedToken(choice, index)).join('');

/** A prompt containing this loses its last choice's end entry (an incomplete stream). */
export const LOSE_CHOICE_END = '[lose-choice-end]';

export interface ScriptedWorker {
  readonly id: string;
  stop(): Promise<void>;
}

export async function startScriptedWorker(
  redisUrl: string,
  prefix: string,
  options: { model: string; tokenDelayMs?: number; id?: string },
): Promise<ScriptedWorker> {
  const id = options.id ?? `scripted-${options.model}-${process.pid}`;
  const keys = redisKeys(prefix);
  const redis = createRedis(redisUrl, 'queue', id, createLogger('scripted-worker', 'silent'));
  await connectRedisOrFail(redis, redisUrl);
  const registry = new WorkerRegistry(
    redis,
    keys,
    {
      id,
      host: hostname(),
      pid: process.pid,
      models: [options.model],
      capacity: 8,
      startedAt: new Date().toISOString(),
    },
    2000,
    createLogger('scripted-worker', 'silent'),
  );
  await registry.start();
  const delay = options.tokenDelayMs ?? 0;
  const worker = new Worker(
    modelQueueName(options.model),
    (job: Job) => run(job, redis, keys, delay, id),
    workerOptions(redis.duplicate(), prefix, 8),
  );
  return {
    id,
    async stop() {
      await worker.close();
      await registry.stop();
      await redis.quit();
    },
  };
}

async function run(
  job: Job,
  redis: ReturnType<typeof createRedis>,
  keys: RedisKeys,
  delay: number,
  workerId: string,
) {
  const jobId = job.id ?? '';
  const emit = (events: ProgressStreamEvent[]) => appendStreamEvents(redis, keys, jobId, events);
  const progress = (promptTokensTotal: number, completionTokens: number) =>
    job.updateProgress({
      phase: 'decode',
      promptTokensDone: promptTokensTotal,
      promptTokensTotal,
      completionTokens,
      worker: { id: workerId, host: hostname(), pid: process.pid },
      updatedAt: new Date().toISOString(),
    });
  switch (job.name as JobName) {
    case JobName.Generate: {
      const payload = jobPayloadSchemas.generate.parse(job.data);
      const text =
        'text' in payload.input
          ? payload.input.text
          : ((await redis.get(keys.document(payload.input.documentId))) ?? '');
      await progress(text.length, 0);
      const choices: GenerateResult['choices'] = [];
      let completionTokens = 0;
      const cachedTokens = payload.stateId === undefined ? 0 : 7;
      for (let choice = 0; choice < payload.n; choice += 1) {
        let output = '';
        let finishReason: 'length' | 'cancelled' = 'length';
        const logprobs: NonNullable<GenerateResult['choices'][number]['logprobs']> = [];
        for (let index = 0; index < payload.sampling.max_tokens; index += 1) {
          if (await isCancelRequested(redis, keys, jobId)) {
            finishReason = 'cancelled';
            break;
          }
          if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
          const token = expectedToken(choice, index);
          const logprob = -0.5 - index / 100;
          const top = Array.from({ length: payload.sampling.logprobs ?? 0 }, (_, rank) => ({
            text: `alt${rank}`,
            logprob: -1 - rank,
          }));
          await emit([{ type: 'token', choice, index, token: index, text: token, logprob, top }]);
          output += token;
          completionTokens += 1;
          logprobs.push({ text: token, logprob, top });
        }
        // A prompt asking for it loses the last choice's end entry, as a lost write would.
        const lost = text.includes(LOSE_CHOICE_END) && choice === payload.n - 1;
        if (lost) continue;
        await emit([
          {
            type: 'choice-end',
            choice,
            finishReason,
            text: '',
            promptTokens: text.length,
            cachedTokens,
          },
        ]);
        choices.push({
          index: choice,
          text: output,
          finishReason,
          ...(payload.sampling.logprobs === undefined ? {} : { logprobs }),
        });
      }
      const result: GenerateResult = {
        choices,
        usage: { promptTokens: text.length, completionTokens, cachedTokens },
      };
      await appendDone(redis, keys, jobId, result.usage);
      await chargeTenantTokens(redis, keys, jobId, payload.owner, text.length + completionTokens);
      return result;
    }
    case JobName.Score: {
      const payload = jobPayloadSchemas.score.parse(job.data);
      const text =
        'text' in payload.input
          ? payload.input.text
          : ((await redis.get(keys.document(payload.input.documentId))) ?? '');
      await progress(text.length, 0);
      await emit([
        { type: 'progress', promptTokensDone: text.length, promptTokensTotal: text.length },
      ]);
      const result = {
        tokens: text.length,
        totalNll: text.length,
        perplexity: Math.E,
        windows: [],
      };
      const usage = { promptTokens: text.length, completionTokens: 0, cachedTokens: 0 };
      await appendDone(redis, keys, jobId, usage, result);
      await chargeTenantTokens(redis, keys, jobId, payload.owner, text.length);
      return result;
    }
    case JobName.Digest: {
      const payload = jobPayloadSchemas.digest.parse(job.data);
      const stateId = `state_${jobId}`;
      const created = new Date();
      const expires = new Date(created.getTime() + payload.stateTtlSeconds * 1000);
      const position = 'text' in payload.input ? payload.input.text.length : 0;
      await redis
        .multi()
        .set(keys.savedState(stateId), 'state-bytes', 'EX', payload.stateTtlSeconds)
        .hset(keys.savedStateMeta(stateId), {
          model: payload.model,
          owner: payload.owner,
          position,
          createdAt: created.toISOString(),
          expiresAt: expires.toISOString(),
        })
        .expire(keys.savedStateMeta(stateId), payload.stateTtlSeconds)
        .exec();
      const result = { stateId, model: payload.model, position, expiresAt: expires.toISOString() };
      const usage = { promptTokens: position, completionTokens: 0, cachedTokens: 0 };
      await appendDone(redis, keys, jobId, usage, result);
      await chargeTenantTokens(redis, keys, jobId, payload.owner, position);
      return result;
    }
  }
}
