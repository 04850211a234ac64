import { z } from 'zod';

/**
 * Redis keys, queue names and records that only gateways read and write: uploaded files,
 * batches, the record of each job a gateway submitted, rate-limit counters and the models seen.
 * They live under the same prefix as {@link RedisKeys} so one `QUEUE_PREFIX` isolates a cluster.
 */
export interface GatewayKeys {
  /** Hash {@link GatewayJobRecord} of a job submitted through the gateway (owner, kind, model). */
  gatewayJob(jobId: string): string;
  /** An uploaded or generated file's bytes. */
  file(fileId: string): string;
  /** Hash {@link FileRecord}. */
  fileMeta(fileId: string): string;
  /** Sorted set of a tenant's file ids by creation time (ms), for cursor pagination. */
  fileIndex(tenant: string): string;
  /** Hash {@link BatchRecord}. */
  batch(batchId: string): string;
  /** Sorted set of a tenant's batch ids by creation time (ms). */
  batchIndex(tenant: string): string;
  /** Sorted set of a tenant's `/v1/jobs` job ids by creation time (ms). */
  jobIndex(tenant: string): string;
  /** Sorted set of a tenant's document ids by creation time (ms). */
  documentIndex(tenant: string): string;
  /** Hash: input line number → JSON {@link BatchLine} of each line that became a job. */
  batchLines(batchId: string): string;
  /** List of error-file lines written while the input was validated (malformed lines). */
  batchRejects(batchId: string): string;
  /** Counter of one tenant's requests or tokens in one {@link RATE_LIMIT_WINDOW_MS} window. */
  rateLimit(tenant: string, kind: 'requests' | 'tokens', window: number): string;
  /** Sorted set of model ids by the last time (ms) a live worker advertised them. */
  readonly modelsSeen: string;
  /** A key an upload streams into before it is renamed to its final key. */
  upload(finalKey: string): string;
}

/**
 * Rate limits count requests and tokens in fixed windows of this length, numbered
 * `floor(ms since the epoch / RATE_LIMIT_WINDOW_MS)`. Gateways count requests; workers charge
 * the tokens of each job when it completes. @defaultValue one minute
 */
export const RATE_LIMIT_WINDOW_MS = 60_000;

export function gatewayKeys(prefix: string): GatewayKeys {
  return {
    gatewayJob: (jobId) => `${prefix}:gw:job:${jobId}`,
    file: (fileId) => `${prefix}:file:${fileId}`,
    fileMeta: (fileId) => `${prefix}:file:${fileId}:meta`,
    fileIndex: (tenant) => `${prefix}:files:${tenant}`,
    batch: (batchId) => `${prefix}:batch:${batchId}`,
    batchIndex: (tenant) => `${prefix}:batches:${tenant}`,
    jobIndex: (tenant) => `${prefix}:jobs:${tenant}`,
    documentIndex: (tenant) => `${prefix}:docs:${tenant}`,
    batchLines: (batchId) => `${prefix}:batch:${batchId}:lines`,
    batchRejects: (batchId) => `${prefix}:batch:${batchId}:rejects`,
    rateLimit: (tenant, kind, window) => `${prefix}:rl:${tenant}:${kind}:${window}`,
    modelsSeen: `${prefix}:gw:models`,
    upload: (finalKey) => `${finalKey}:upload`,
  };
}

/** The gateway's own queue: batch validation, finalization and expiry. */
export const gatewayQueueName = 'gateway.batches';

export const GatewayJobName = {
  /** Read a batch's input file, queue its valid lines as a flow, reject malformed ones. */
  ValidateBatch: 'validate-batch',
  /** Parent of a batch's line jobs: runs when all of them finished and writes the output files. */
  FinalizeBatch: 'finalize-batch',
  /** Delayed until a batch's `expires_at`: stops what is still queued. */
  ExpireBatch: 'expire-batch',
} as const;
export type GatewayJobName = (typeof GatewayJobName)[keyof typeof GatewayJobName];

export const batchJobDataSchema = z.strictObject({ batchId: z.string().min(1) });

/** How a job's output is presented: OpenAI completion, chat completion, or the jobs API. */
export const jobKindSchema = z.enum(['completion', 'chat', 'job']);

/**
 * A yes/no field of a stored record. Hash fields are strings, so it is stored as '1' or '0';
 * code on either side of the store sees a boolean (`parse` decodes, `z.encode` encodes).
 */
export const storedFlagSchema = z.codec(z.enum(['0', '1']), z.boolean(), {
  decode: (stored) => stored === '1',
  encode: (flag) => (flag ? '1' : '0'),
});

/** Values of the {@link GatewayJobRecord} fields a gateway may leave out when it writes one. */
export const gatewayJobRecordDefaults = {
  includeUsage: false,
  logprobs: false,
  choices: 1,
  maxOutputTokens: 0,
} as const;

export const gatewayJobRecordSchema = z.object({
  owner: z.string().min(1),
  kind: jobKindSchema,
  /** The job name (generate, score, digest). */
  type: z.enum(['generate', 'score', 'digest']),
  model: z.string(),
  /** Unix seconds. */
  created: z.coerce.number().int(),
  /** `stream_options.include_usage` of a streamed completion. */
  includeUsage: storedFlagSchema.default(gatewayJobRecordDefaults.includeUsage),
  /** Whether the job's answer (streamed chunks, or the result) carries each token's logprobs. */
  logprobs: storedFlagSchema.default(gatewayJobRecordDefaults.logprobs),
  /** Number of choices (OpenAI `n`). */
  choices: z.coerce.number().int().min(1).default(gatewayJobRecordDefaults.choices),
  /** Output tokens the job may produce in total (max_tokens × n), for the ETA. */
  maxOutputTokens: z.coerce.number().int().min(0).default(gatewayJobRecordDefaults.maxOutputTokens),
  /** Unix seconds at which a cancellation was requested. */
  cancelledAt: z.coerce.number().int().optional(),
});
/** A gateway job record as read (decoded: flags are booleans, defaults applied). */
export type GatewayJobRecord = z.infer<typeof gatewayJobRecordSchema>;
type DefaultedField = keyof typeof gatewayJobRecordDefaults;
/** What a gateway writes: a record in the same terms, where defaulted fields may be left out. */
export type GatewayJobRecordInput = Omit<GatewayJobRecord, DefaultedField> &
  Partial<Pick<GatewayJobRecord, DefaultedField>>;

export const filePurposeSchema = z.enum(['batch', 'batch_output', 'user_data']);

export const fileRecordSchema = z.object({
  id: z.string(),
  owner: z.string(),
  bytes: z.coerce.number().int().min(0),
  created_at: z.coerce.number().int(),
  filename: z.string(),
  purpose: filePurposeSchema,
});
export type FileRecord = z.infer<typeof fileRecordSchema>;

export const batchStatusSchema = z.enum([
  'validating',
  'failed',
  'in_progress',
  'finalizing',
  'completed',
  'expired',
  'cancelling',
  'cancelled',
]);
export type BatchStatus = z.infer<typeof batchStatusSchema>;

/** A batch as stored: flat hash fields; JSON-valued ones are encoded strings. */
export const batchRecordSchema = z.object({
  id: z.string(),
  owner: z.string(),
  status: batchStatusSchema,
  endpoint: z.enum(['/v1/completions', '/v1/chat/completions']),
  input_file_id: z.string(),
  completion_window: z.string(),
  created_at: z.coerce.number().int(),
  expires_at: z.coerce.number().int(),
  in_progress_at: z.coerce.number().int().optional(),
  finalizing_at: z.coerce.number().int().optional(),
  completed_at: z.coerce.number().int().optional(),
  failed_at: z.coerce.number().int().optional(),
  expired_at: z.coerce.number().int().optional(),
  cancelling_at: z.coerce.number().int().optional(),
  cancelled_at: z.coerce.number().int().optional(),
  output_file_id: z.string().optional(),
  error_file_id: z.string().optional(),
  /** Lines in the input file that hold a request (valid or not). */
  total: z.coerce.number().int().min(0).default(0),
  /** Lines rejected during validation (already in the error file). */
  rejected: z.coerce.number().int().min(0).default(0),
  /** Final counts, written when the batch reaches a terminal status. */
  completed: z.coerce.number().int().min(0).optional(),
  failed: z.coerce.number().int().min(0).optional(),
  /** JSON: OpenAI `metadata` object or null. */
  metadata: z.string().default('null'),
  /** JSON: `errors.data` when validation failed the whole batch. */
  errors: z.string().optional(),
  /** JSON: OpenAI `usage` once finalized. */
  usage: z.string().optional(),
  /** Why the batch stops early: a cancel or its expiry. */
  stop_reason: z.enum(['cancelled', 'expired']).optional(),
});
export type BatchRecord = z.infer<typeof batchRecordSchema>;

/** One input line that became a job. */
export const batchLineSchema = z.strictObject({
  customId: z.string(),
  jobId: z.string(),
  model: z.string(),
});
export type BatchLine = z.infer<typeof batchLineSchema>;

/**
 * The hash `RedisKeys.savedStateMeta` as the gateway reads it (the worker that digests a text
 * writes it): the state's model, its owner (tenant), its position in tokens and its times.
 */
export const savedStateMetaSchema = z.object({
  model: z.string(),
  owner: z.string(),
  position: z.coerce.number().int().min(0),
  createdAt: z.string(),
  expiresAt: z.string(),
});
export type SavedStateMeta = z.infer<typeof savedStateMetaSchema>;
