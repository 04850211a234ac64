import type { Queue } from 'bullmq';
import type { RedisClient } from '#cluster';
import { InvalidJobError, JobName, parseModelJob, type ModelJob, type RedisKeys } from '#contracts';

/**
 * Most jobs read per queue and state at one scrape. Beyond it the queue's totals are extrapolated
 * from the jobs that run first (see {@link WaitingWork.read}). MAX_QUEUE_DEPTH (default 1000 per
 * priority class) keeps ordinary queues below it; a large batch's lines can exceed it.
 * @defaultValue 2000
 */
export const WAITING_WORK_SCAN_LIMIT = 2000;

/** The work one job asks for, as far as the gateway can tell without the model's tokenizer. */
export interface JobWork {
  /**
   * UTF-8 bytes of the text the job reads: its inline text, or the uploaded document's size. As
   * many tokens for a byte-level tokenizer (the default model's); ≈ 4 bytes a token for English
   * with a BPE tokenizer.
   */
  readonly inputBytes: number;
  /** The most tokens the job may generate: `max_tokens × n` (score and digest jobs: 0). */
  readonly outputTokens: number;
}

/** The work waiting in one model queue. */
export interface QueueWork extends JobWork {
  /** Jobs waiting to start (BullMQ's `wait` and `prioritized` states). */
  readonly jobs: number;
  /** How many of them were read; fewer than `jobs` when the totals are extrapolated. */
  readonly read: number;
}

/** BullMQ's states of a job that waits for a worker (ours always carry a priority). */
const WAITING_STATES = ['prioritized', 'wait'] as const;

/**
 * Jobs whose data one round trip reads: a job's data can hold a prompt of up to MAX_BODY_BYTES,
 * so this bounds what a scrape holds in memory at once. @defaultValue 50
 */
const READ_CHUNK = 50;

const NO_WORK: JobWork = { inputBytes: 0, outputTokens: 0 };

/** The work of one parsed job; `documentBytes` is the size of its uploaded document, if any. */
export function jobWork(job: ModelJob, documentBytes: number): JobWork {
  const inputBytes =
    'text' in job.data.input ? Buffer.byteLength(job.data.input.text, 'utf8') : documentBytes;
  switch (job.name) {
    case JobName.Generate:
      return { inputBytes, outputTokens: job.data.sampling.max_tokens * job.data.n };
    case JobName.Score:
    case JobName.Digest:
      return { inputBytes, outputTokens: 0 };
  }
}

/**
 * The work waiting per model queue, for the autoscaler: jobs alone are a poor signal, since one
 * 1M-token document is not one chat turn.
 *
 * Cost: a job's data is read from Redis once, the first time a scrape sees it waiting; its work is
 * then remembered by id for as long as it keeps waiting (job data does not change while a job
 * waits). Each scrape reads only the ids of at most {@link WAITING_WORK_SCAN_LIMIT} jobs per state
 * and the data of the new ones, so a scrape costs O(limit) ids however long the queue, and a
 * steady queue costs no job reads at all. Counting at enqueue and dequeue instead would need every
 * path that moves a job (worker start, stalled-job recovery, a SIGTERM hand-back, cancellation,
 * retries, removal) to keep a counter right, and one missed path drifts it for good; a scan that
 * remembers what it read cannot drift.
 */
export class WaitingWork {
  /** Per queue: the work of each job the last scrape saw waiting. */
  private readonly remembered = new Map<string, Map<string, JobWork>>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly scanLimit = WAITING_WORK_SCAN_LIMIT,
  ) {}

  /**
   * The queue's waiting work. When more jobs wait than were read, the totals are those of the
   * jobs read (the first to run) scaled by `jobs / read`: an estimate that assumes the rest of the
   * queue looks like its head.
   */
  async read(queue: Queue): Promise<QueueWork> {
    const counts = await queue.getJobCounts(...WAITING_STATES);
    const jobs = WAITING_STATES.reduce((sum, state) => sum + (counts[state] ?? 0), 0);
    const ids = await queue.getRanges([...WAITING_STATES], 0, this.scanLimit - 1, true);
    const before = this.remembered.get(queue.name) ?? new Map<string, JobWork>();
    const unknown = ids.filter((id) => !before.has(id));
    const fresh = new Map<string, JobWork>();
    for (let start = 0; start < unknown.length; start += READ_CHUNK) {
      const chunk = await this.readJobs(queue, unknown.slice(start, start + READ_CHUNK));
      for (const [id, work] of chunk) fresh.set(id, work);
    }
    const now = new Map<string, JobWork>();
    let inputBytes = 0;
    let outputTokens = 0;
    for (const id of ids) {
      const work = before.get(id) ?? fresh.get(id) ?? NO_WORK;
      now.set(id, work);
      inputBytes += work.inputBytes;
      outputTokens += work.outputTokens;
    }
    this.remembered.set(queue.name, now);
    const scale = jobs > ids.length && ids.length > 0 ? jobs / ids.length : 1;
    return {
      jobs,
      read: ids.length,
      inputBytes: Math.round(inputBytes * scale),
      outputTokens: Math.round(outputTokens * scale),
    };
  }

  /**
   * The work of jobs not seen before, in two pipelined round trips (job name and data, then the
   * sizes of their documents); the job's text is measured and dropped, never kept. A job gone meanwhile, or whose data no worker would accept (a
   * foreign producer's), counts as no work: no worker will spend time on it.
   */
  private async readJobs(queue: Queue, ids: readonly string[]): Promise<Map<string, JobWork>> {
    const parsed = new Map<string, ModelJob>();
    if (ids.length === 0) return new Map();
    const fields = await pipelined(
      this.redis,
      ids.map((id) => ['hmget', queue.toKey(id), 'name', 'data']),
    );
    ids.forEach((id, index) => {
      const [name, data] = (fields[index] ?? []) as (string | null)[];
      if (name === null || name === undefined || data === null || data === undefined) return;
      try {
        parsed.set(id, parseModelJob(name, JSON.parse(data)));
      } catch (error) {
        if (!(error instanceof InvalidJobError || error instanceof SyntaxError)) throw error;
      }
    });
    const withDocument = [...parsed].flatMap(([id, job]) =>
      'documentId' in job.data.input ? [[id, job.data.input.documentId] as const] : [],
    );
    const lengths = await pipelined(
      this.redis,
      withDocument.map(([, documentId]) => ['strlen', this.keys.document(documentId)]),
    );
    const documentBytes = new Map(
      withDocument.map(([id], index) => [id, Number(lengths[index] ?? 0)]),
    );
    return new Map([...parsed].map(([id, job]) => [id, jobWork(job, documentBytes.get(id) ?? 0)]));
  }
}

/** Runs commands in one pipeline; the first command error fails the whole read. */
async function pipelined(redis: RedisClient, commands: string[][]): Promise<unknown[]> {
  if (commands.length === 0) return [];
  const results = (await redis.pipeline(commands).exec()) ?? [];
  return results.map(([error, value]) => {
    if (error !== null) throw error;
    return value;
  });
}
