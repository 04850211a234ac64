import type { RedisClient } from '#cluster';
import { fileRecordSchema, type FileRecord, type GatewayKeys } from '#contracts';
import { notFound, payloadTooLarge } from '../common/api-error.js';
import { pageOfIds } from '../common/pagination.js';
import type { FileBody } from '../docs/response-schemas.js';

/** Uploads reach Redis in appends of about this size. @defaultValue 1 MiB */
const APPEND_BYTES = 1024 * 1024;
/** A partial upload left by a crashed gateway expires after this long. @defaultValue 1 h */
const UPLOAD_TTL_SECONDS = 3600;
/** Reads from Redis in ranges of this size. @defaultValue 1 MiB */
const READ_BYTES = 1024 * 1024;

/**
 * Streams `source` into the Redis string `key` without holding it in memory: chunks are appended
 * to a temporary key as they arrive (the source is not read further until Redis took the last
 * chunk) and renamed into place at the end, so a failed or oversize upload leaves nothing behind.
 * Returns the byte count.
 */
export async function streamIntoRedis(
  redis: RedisClient,
  gateway: GatewayKeys,
  key: string,
  source: AsyncIterable<Buffer>,
  options: { maxBytes: number; what: string; check?: (chunk: Buffer, last: boolean) => void },
): Promise<number> {
  const temporary = gateway.upload(key);
  let total = 0;
  // One reused buffer: appends copy into it, so an upload of any size allocates nothing per chunk.
  const pending = Buffer.allocUnsafe(APPEND_BYTES);
  let pendingBytes = 0;
  const flush = async (): Promise<void> => {
    if (pendingBytes === 0) return;
    await redis.append(temporary, pending.subarray(0, pendingBytes));
    pendingBytes = 0;
  };
  try {
    // A gateway that dies mid-upload must not leave up to MAX_*_BYTES behind: the partial
    // upload expires (the rename below keeps no TTL on the finished key).
    await redis.set(temporary, '', 'EX', UPLOAD_TTL_SECONDS);
    for await (const chunk of source) {
      total += chunk.length;
      if (total > options.maxBytes) {
        throw payloadTooLarge(
          `The ${options.what} is larger than the limit of ${options.maxBytes} bytes.`,
        );
      }
      options.check?.(chunk, false);
      for (let offset = 0; offset < chunk.length;) {
        const copied = chunk.copy(pending, pendingBytes, offset);
        offset += copied;
        pendingBytes += copied;
        if (pendingBytes === APPEND_BYTES) await flush();
      }
    }
    options.check?.(Buffer.alloc(0), true);
    await flush();
    await redis.rename(temporary, key);
    return total;
  } catch (error) {
    // The original error (413, bad UTF-8, …) is what the client must see, even if Redis fails.
    await redis.del(temporary).catch(() => undefined);
    throw error;
  }
}

/** The bytes of a Redis string, range by range. */
export async function* readFromRedis(redis: RedisClient, key: string): AsyncGenerator<Buffer> {
  const length = await redis.strlen(key);
  for (let start = 0; start < length; start += READ_BYTES) {
    yield await redis.getrangeBuffer(key, start, Math.min(start + READ_BYTES, length) - 1);
  }
}

/** Splits a byte stream into lines (without the line break), decoding UTF-8 across chunks. */
export async function* linesOf(chunks: AsyncIterable<Buffer>): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8');
  let carry = '';
  for await (const chunk of chunks) {
    carry += decoder.decode(chunk, { stream: true });
    let newline = carry.indexOf('\n');
    while (newline !== -1) {
      yield carry.slice(0, newline).replace(/\r$/, '');
      carry = carry.slice(newline + 1);
      newline = carry.indexOf('\n');
    }
  }
  carry += decoder.decode();
  if (carry !== '') yield carry.replace(/\r$/, '');
}

/** Files (`/v1/files`): bytes and metadata in Redis, listed per tenant. */
export class FileStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly gateway: GatewayKeys,
  ) {}

  private contentKey(fileId: string): string {
    return this.gateway.file(fileId);
  }

  /**
   * Streams an upload's bytes into the content of `fileId` (see {@link streamIntoRedis}); the
   * file exists for clients once {@link register}ed. Returns the byte count.
   */
  async receive(fileId: string, bytes: AsyncIterable<Buffer>, maxBytes: number): Promise<number> {
    return streamIntoRedis(this.redis, this.gateway, this.contentKey(fileId), bytes, {
      maxBytes,
      what: 'file',
    });
  }

  /** Drops the content of an upload that was not registered. */
  async discard(fileId: string): Promise<void> {
    await this.redis.del(this.contentKey(fileId));
  }

  /** One page of a tenant's file ids (cursor pagination, newest first unless asked). */
  async pageOfIds(tenant: string, cursor: unknown): Promise<{ ids: string[]; hasMore: boolean }> {
    return pageOfIds(this.redis, this.gateway.fileIndex(tenant), cursor);
  }

  /** Records a file whose bytes were {@link receive}d (or written by {@link writeLines}). */
  async register(record: FileRecord): Promise<void> {
    const fields = Object.entries(record).flatMap(([name, value]) => [name, String(value)]);
    await this.redis
      .multi()
      .hset(this.gateway.fileMeta(record.id), ...fields)
      .zadd(this.gateway.fileIndex(record.owner), record.created_at * 1000, record.id)
      .exec();
  }

  /** Writes a whole generated file (batch output) from lines, appending as it goes. */
  async writeLines(
    record: Omit<FileRecord, 'bytes'>,
    lines: Iterable<string> | AsyncIterable<string>,
  ): Promise<FileRecord> {
    async function* encoded(): AsyncGenerator<Buffer> {
      for await (const line of lines) yield Buffer.from(`${line}\n`, 'utf8');
    }
    const bytes = await streamIntoRedis(
      this.redis,
      this.gateway,
      this.contentKey(record.id),
      encoded(),
      {
        maxBytes: Number.MAX_SAFE_INTEGER,
        what: 'file',
      },
    );
    const full = { ...record, bytes };
    await this.register(full);
    return full;
  }

  /** The file's record, or 404 when missing or another tenant's. */
  async get(fileId: string, tenant: string, param: string | null = null): Promise<FileRecord> {
    const parsed = fileRecordSchema.safeParse(
      await this.redis.hgetall(this.gateway.fileMeta(fileId)),
    );
    if (!parsed.success || parsed.data.owner !== tenant) throw notFound('file', fileId, param);
    return parsed.data;
  }

  async records(ids: readonly string[]): Promise<FileRecord[]> {
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hgetall(this.gateway.fileMeta(id));
    const results = (await pipeline.exec()) ?? [];
    return results.flatMap(([, raw]) => {
      const parsed = fileRecordSchema.safeParse(raw);
      return parsed.success ? [parsed.data] : [];
    });
  }

  async delete(record: FileRecord): Promise<void> {
    await this.redis
      .multi()
      .del(this.gateway.file(record.id), this.gateway.fileMeta(record.id))
      .zrem(this.gateway.fileIndex(record.owner), record.id)
      .exec();
  }

  content(fileId: string): AsyncGenerator<Buffer> {
    return readFromRedis(this.redis, this.contentKey(fileId));
  }
}

export function fileObject(record: FileRecord): FileBody {
  return {
    id: record.id,
    object: 'file' as const,
    bytes: record.bytes,
    created_at: record.created_at,
    filename: record.filename,
    purpose: record.purpose,
    status: 'processed',
    expires_at: null,
    status_details: null,
  };
}
