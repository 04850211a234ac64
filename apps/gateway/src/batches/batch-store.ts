import type { RedisClient } from '#cluster';
import {
  batchLineSchema,
  batchRecordSchema,
  batchStatusSchema,
  type BatchLine,
  type BatchRecord,
  type BatchStatus,
  type GatewayKeys,
} from '#contracts';
import { pageOfIds } from '../common/pagination.js';

/** Statuses a batch never leaves. */
export const TERMINAL_STATUSES: readonly BatchStatus[] = [
  'completed',
  'failed',
  'expired',
  'cancelled',
];

export const isTerminal = (status: BatchStatus): boolean => TERMINAL_STATUSES.includes(status);

export const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/** Every status but the first: the ones a batch moves to. */
export type BatchTarget = Exclude<BatchStatus, 'validating'>;

/**
 * The batch state machine: for each status, the statuses a batch may move to it from, and the
 * record field that stamps when it did. A batch is created `validating`.
 */
const TRANSITIONS = {
  in_progress: { from: ['validating'], stamp: 'in_progress_at' },
  failed: { from: ['validating', 'cancelling'], stamp: 'failed_at' },
  cancelling: { from: ['validating', 'in_progress'], stamp: 'cancelling_at' },
  finalizing: { from: ['in_progress'], stamp: 'finalizing_at' },
  // A cancelled or expired batch is finalized from where it stopped.
  completed: { from: ['finalizing', 'cancelling', 'in_progress'], stamp: 'completed_at' },
  expired: { from: ['finalizing', 'cancelling', 'in_progress'], stamp: 'expired_at' },
  cancelled: { from: ['finalizing', 'cancelling', 'in_progress'], stamp: 'cancelled_at' },
} as const satisfies Record<
  BatchTarget,
  { from: readonly BatchStatus[]; stamp: keyof BatchRecord }
>;

/**
 * Moves a batch to a status only from one of the allowed ones, in one step, so that a cancel and
 * the finalizer racing on two gateways cannot both win. KEYS[1]: the batch hash; ARGV[1]: the
 * allowed statuses, comma-separated; ARGV[2..]: field, value pairs to write (the new status among
 * them). Replies with the status the batch had (moved or not), or nil when there is no batch.
 */
const TRANSITION_SCRIPT = `
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
for allowed in string.gmatch(ARGV[1], '[^,]+') do
  if allowed == status then
    redis.call('HSET', KEYS[1], unpack(ARGV, 2))
    return status
  end
end
return status`;

/** The store's Lua scripts as ioredis custom commands (EVALSHA, EVAL once when Redis lacks it). */
interface BatchCommands {
  /** {@link TRANSITION_SCRIPT} */
  batchTransition(
    batchKey: string,
    allowedFrom: string,
    ...fieldsAndValues: (string | number)[]
  ): Promise<string | null>;
}

function withBatchCommands(redis: RedisClient): RedisClient & BatchCommands {
  // Defining again on a shared client replaces the same script: harmless.
  redis.defineCommand('batchTransition', { numberOfKeys: 1, lua: TRANSITION_SCRIPT });
  // defineCommand adds the method at run time; ioredis cannot type it.
  return redis as RedisClient & BatchCommands;
}

/** Lines written to Redis per round trip. @defaultValue 500 */
const WRITE_CHUNK = 500;

/** What validation found in an input file, written for the finalizer to read. */
export interface ValidatedLines {
  /** Lines that hold a request, valid or not. */
  total: number;
  /** Error-file lines of the rejected requests. */
  rejects: readonly string[];
  /** The requests that became jobs, by input line number. */
  accepted: readonly (readonly [lineNumber: number, line: BatchLine])[];
}

/**
 * Batch records in Redis: a hash per batch ({@link BatchRecord}), an index per tenant, and while a
 * batch runs, its accepted lines and its rejected lines' error entries. Every status change goes
 * through {@link BatchStore.transition}.
 */
export class BatchStore {
  private readonly redis: RedisClient & BatchCommands;

  constructor(
    redis: RedisClient,
    private readonly gateway: GatewayKeys,
  ) {
    this.redis = withBatchCommands(redis);
  }

  async create(record: BatchRecord): Promise<void> {
    await this.redis
      .multi()
      .hset(this.gateway.batch(record.id), ...fieldsOf(record))
      .zadd(this.gateway.batchIndex(record.owner), record.created_at * 1000, record.id)
      .exec();
  }

  /** The batch, or undefined when there is none (or its record is not one). */
  async find(id: string): Promise<BatchRecord | undefined> {
    const parsed = batchRecordSchema.safeParse(await this.redis.hgetall(this.gateway.batch(id)));
    return parsed.success ? parsed.data : undefined;
  }

  /** One page of a tenant's batch ids, newest first unless `query` says otherwise. */
  async pageOfIds(tenant: string, query: unknown): Promise<{ ids: string[]; hasMore: boolean }> {
    return pageOfIds(this.redis, this.gateway.batchIndex(tenant), query);
  }

  /**
   * Moves the batch to `to` (stamping `{to}_at` with `at`) and writes `fields`, if its status is
   * one that {@link TRANSITIONS} allows; returns the status it had either way, or undefined when
   * there is no batch.
   */
  async transition(
    id: string,
    to: BatchTarget,
    fields: Partial<Omit<BatchRecord, 'status'>> = {},
    at: number = nowSeconds(),
  ): Promise<BatchStatus | undefined> {
    const { from, stamp } = TRANSITIONS[to];
    const previous = await this.redis.batchTransition(
      this.gateway.batch(id),
      from.join(','),
      ...fieldsOf({ ...fields, status: to, [stamp]: at }),
    );
    return previous === null ? undefined : batchStatusSchema.parse(previous);
  }

  /** Records why the batch stops early; the finalizer reads it. */
  async setStopReason(id: string, reason: NonNullable<BatchRecord['stop_reason']>): Promise<void> {
    await this.redis.hset(this.gateway.batch(id), 'stop_reason', reason);
  }

  /** Writes what validation found; a validation retried after a crash replaces it. */
  async saveValidatedLines(id: string, lines: ValidatedLines): Promise<void> {
    const rejectsKey = this.gateway.batchRejects(id);
    await this.redis.del(rejectsKey);
    for (let start = 0; start < lines.rejects.length; start += WRITE_CHUNK) {
      await this.redis.rpush(rejectsKey, ...lines.rejects.slice(start, start + WRITE_CHUNK));
    }
    for (let start = 0; start < lines.accepted.length; start += WRITE_CHUNK) {
      await this.redis.hset(
        this.gateway.batchLines(id),
        ...lines.accepted
          .slice(start, start + WRITE_CHUNK)
          .flatMap(([number, line]) => [String(number), JSON.stringify(line)]),
      );
    }
    await this.redis.hset(
      this.gateway.batch(id),
      'total',
      lines.total,
      'rejected',
      lines.rejects.length,
    );
  }

  /** The batch's accepted lines in input order. */
  async acceptedLines(id: string): Promise<BatchLine[]> {
    return Object.entries(await this.redis.hgetall(this.gateway.batchLines(id)))
      .map(([number, raw]) => [Number(number), batchLineSchema.parse(JSON.parse(raw))] as const)
      .sort((a, b) => a[0] - b[0])
      .map(([, line]) => line);
  }

  /** Error-file lines of the requests rejected while validating. */
  async rejectedLines(id: string): Promise<string[]> {
    return this.redis.lrange(this.gateway.batchRejects(id), 0, -1);
  }

  /** Drops the lines kept while the batch ran (its files hold them now). */
  async dropLines(id: string): Promise<void> {
    await this.redis.del(this.gateway.batchLines(id), this.gateway.batchRejects(id));
  }
}

/** A record's fields as HSET arguments; absent ones are left out. */
function fieldsOf(record: Partial<BatchRecord>): (string | number)[] {
  return Object.entries(record).flatMap(([name, value]) =>
    value === undefined ? [] : [name, value],
  );
}
