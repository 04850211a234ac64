/**
 * The Redis key layout shared by every process of the cluster. All keys live under one prefix so
 * that several clusters (or test runs) can share a Redis server without seeing each other.
 * BullMQ's own keys use the same prefix (`{prefix}:{queue}:…`).
 *
 * @defaultValue prefix `dijiang` (`QUEUE_PREFIX`)
 */
export interface RedisKeys {
  readonly prefix: string;
  /** Set of worker ids that have registered; entries whose record expired are pruned on read. */
  readonly workerIndex: string;
  /** The worker's record (JSON {@link WorkerRecord}); expires unless its heartbeat renews it. */
  worker(workerId: string): string;
  /** Redis stream of a job's output events (see streams.ts); the source of truth for output. */
  jobStream(jobId: string): string;
  /** Pub/sub channel on which cancellation requests (a job id) are announced to all workers. */
  readonly cancelChannel: string;
  /** Set when a job is cancelled, for a worker that picks the job up after the announcement. */
  cancelFlag(jobId: string): string;
  /** A finished job's result when too large for its stream's `done` entry (JSON). */
  jobResult(jobId: string): string;
  /**
   * The stream entry id of a job's end (`done` or `failed`), set with the entry: a stream ends
   * once, however often its job is retried, and readers find its end without scanning it.
   */
  jobEnd(jobId: string): string;
  /** Binary recurrent state of one choice of a running job (see DESIGN.md decision 5). */
  checkpoint(jobId: string, choice: number): string;
  /** Binary recurrent state saved for later requests (`/v1/states`). */
  savedState(stateId: string): string;
  /** Hash describing a saved state (model, position, owner, created/expiry). */
  savedStateMeta(stateId: string): string;
  /** An uploaded document's text (`/v1/documents`). */
  document(documentId: string): string;
  /** Hash describing an uploaded document (owner, bytes, created). */
  documentMeta(documentId: string): string;
  /** Prefix-state cache: one state per (model, token-prefix hash). */
  prefixState(modelId: string, prefixHash: string): string;
  /**
   * Held (value: the claimant) while one sequence computes the state of a prefix that other
   * sequences wait for instead of computing it too; expires unless the claimant renews it.
   */
  prefixClaim(modelId: string, prefixHash: string): string;
  /** Sorted set of prefix-cache entries by last use (for least-recently-used eviction). */
  readonly prefixIndex: string;
  /** Hash of prefix-cache counters: hits, misses, bytes, evictions. */
  readonly prefixStats: string;
  /** Set once a job's tokens are charged to its tenant: a retried completion charges nothing. */
  tokensCharged(jobId: string): string;
  /**
   * Counter of the tokens (prompt and output) of every job finished in the cluster, raised once
   * per job with its charge: its rate is the cluster's throughput.
   */
  readonly tokensProcessed: string;
  /**
   * A model's chat template (JSON `ModelChat`, see workers.ts), written by each worker that
   * serves the model before it takes jobs, read by gateways to render chat requests.
   */
  modelChat(modelId: string): string;
  /**
   * Hash beside a {@link RedisKeys.checkpoint}: the position of the next token and the tokens
   * the state has absorbed, written in the same transaction as the state.
   */
  checkpointMeta(jobId: string, choice: number): string;
  /**
   * Score jobs: the log-probs scored so far beside a {@link RedisKeys.checkpoint}, as float64
   * bytes in token order (each checkpoint writes only the new ones, at their offset).
   */
  checkpointLogprobs(jobId: string, choice: number): string;
}

export function redisKeys(prefix: string): RedisKeys {
  return {
    prefix,
    workerIndex: `${prefix}:workers`,
    worker: (workerId) => `${prefix}:worker:${workerId}`,
    jobStream: (jobId) => `${prefix}:stream:${jobId}`,
    jobResult: (jobId) => `${prefix}:result:${jobId}`,
    jobEnd: (jobId) => `${prefix}:end:${jobId}`,
    cancelChannel: `${prefix}:cancel`,
    cancelFlag: (jobId) => `${prefix}:cancel:${jobId}`,
    checkpoint: (jobId, choice) => `${prefix}:ckpt:${jobId}:${choice}`,
    savedState: (stateId) => `${prefix}:state:${stateId}`,
    savedStateMeta: (stateId) => `${prefix}:state:${stateId}:meta`,
    document: (documentId) => `${prefix}:doc:${documentId}`,
    documentMeta: (documentId) => `${prefix}:doc:${documentId}:meta`,
    prefixState: (modelId, prefixHash) => `${prefix}:pfx:${modelId}:${prefixHash}`,
    prefixClaim: (modelId, prefixHash) => `${prefix}:pfx-claim:${modelId}:${prefixHash}`,
    prefixIndex: `${prefix}:pfx:index`,
    prefixStats: `${prefix}:pfx:stats`,
    tokensCharged: (jobId) => `${prefix}:charged:${jobId}`,
    tokensProcessed: `${prefix}:stats:tokens`,
    modelChat: (modelId) => `${prefix}:model:${modelId}:chat`,
    checkpointMeta: (jobId, choice) => `${prefix}:ckpt:${jobId}:${choice}:meta`,
    checkpointLogprobs: (jobId, choice) => `${prefix}:ckpt:${jobId}:${choice}:logprobs`,
  };
}

/**
 * BullMQ's own key of one job (`{prefix}:{queue}:{jobId}`): the key under which a flow's parent
 * sees each child's return value (`getChildrenValues`) and ignored failure
 * (`getIgnoredChildrenFailures`). BullMQ builds it internally; this mirrors its layout in one place.
 */
export function bullJobKey(prefix: string, queue: string, jobId: string): string {
  return `${prefix}:${queue}:${jobId}`;
}
