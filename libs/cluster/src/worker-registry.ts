import type { RedisClient } from './redis.js';
import { workerRecordSchema, type RedisKeys, type WorkerRecord } from '#contracts';
import type { Logger } from './logger.js';

export type WorkerIdentity = Omit<WorkerRecord, 'heartbeatAt'>;

/**
 * A worker's presence in the cluster. The record is a Redis key with a TTL that each heartbeat
 * renews, so a worker that dies without deregistering (SIGKILL, lost host) disappears within
 * `ttlMs` without anyone having to notice the death. Expiry runs on the Redis clock, so clocks of
 * different hosts never matter.
 */
export class WorkerRegistry {
  private timer: NodeJS.Timeout | undefined;
  private beating = false;
  private outageLogged = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly identity: WorkerIdentity,
    private readonly ttlMs: number,
    private readonly logger: Logger,
  ) {}

  /** Registers now (failing loudly if Redis refuses) and keeps the record fresh. */
  async start(): Promise<void> {
    await this.writeRecord();
    // Several beats per TTL, so one slow or lost beat never lets a live worker expire.
    this.timer = setInterval(
      () => {
        void this.beat();
      },
      Math.max(100, Math.floor(this.ttlMs / 4)),
    );
  }

  /** Stops the heartbeat and removes the record, so the worker disappears at once. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.redis
      .multi()
      .del(this.keys.worker(this.identity.id))
      .srem(this.keys.workerIndex, this.identity.id)
      .exec();
  }

  private async beat(): Promise<void> {
    if (this.beating) return;
    this.beating = true;
    try {
      await this.writeRecord();
      if (this.outageLogged) this.logger.info('heartbeat restored');
      this.outageLogged = false;
    } catch (error) {
      // Redis is down or unreachable: keep beating; the record is rewritten when it returns.
      if (!this.outageLogged) this.logger.warn({ err: error }, 'heartbeat failed; retrying');
      this.outageLogged = true;
    } finally {
      this.beating = false;
    }
  }

  private async writeRecord(): Promise<void> {
    const record: WorkerRecord = { ...this.identity, heartbeatAt: new Date().toISOString() };
    await this.redis
      .multi()
      .set(this.keys.worker(record.id), JSON.stringify(record), 'PX', this.ttlMs)
      .sadd(this.keys.workerIndex, record.id)
      .exec();
  }
}

/** The workers whose heartbeat is current, sorted by id; prunes index entries that expired. */
export async function listLiveWorkers(
  redis: RedisClient,
  keys: RedisKeys,
): Promise<WorkerRecord[]> {
  const ids = await redis.smembers(keys.workerIndex);
  if (ids.length === 0) return [];
  const records = await redis.mget(ids.map((id) => keys.worker(id)));
  const live: WorkerRecord[] = [];
  const expired: string[] = [];
  records.forEach((raw, index) => {
    const id = ids[index];
    if (id === undefined) return;
    if (raw === null) {
      expired.push(id);
      return;
    }
    const parsed = workerRecordSchema.safeParse(parseJson(raw));
    if (parsed.success) live.push(parsed.data);
    else expired.push(id);
  });
  if (expired.length > 0) await redis.srem(keys.workerIndex, ...expired);
  return live.sort((a, b) => a.id.localeCompare(b.id));
}

function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}
