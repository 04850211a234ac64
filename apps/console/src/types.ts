/**
 * The API bodies the console reads, as the gateway documents them at `/docs` (only the fields
 * the console uses).
 */

export interface Page<T> {
  object: 'list';
  data: T[];
  has_more: boolean;
}

export interface Model {
  id: string;
}

export type JobStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

export interface ScoreWindow {
  /** Token positions [start, end). */
  start: number;
  end: number;
  nll: number;
  perplexity: number;
}

export interface ScoreResult {
  tokens: number;
  total_nll: number;
  perplexity: number;
  windows: ScoreWindow[];
}

export interface GenerateResult {
  choices: { index: number; text: string; finish_reason: string }[];
}

export interface DigestResult {
  state_id: string;
  position: number;
}

export interface Job {
  id: string;
  type: 'generate' | 'score' | 'digest';
  model: string;
  status: JobStatus;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  progress: {
    phase: 'prefill' | 'decode' | 'finishing';
    prompt_tokens_done: number;
    prompt_tokens_total: number;
    completion_tokens: number;
  } | null;
  eta_seconds: number | null;
  worker: { id: string; host: string; pid: number } | null;
  result: ScoreResult | GenerateResult | DigestResult | null;
  error: { message: string } | null;
}

export interface DocumentInfo {
  id: string;
  bytes: number;
  created_at: number;
  filename: string;
}

export interface Batch {
  id: string;
  endpoint: string;
  status: string;
  created_at: number;
  in_progress_at: number | null;
  output_file_id: string | null;
  error_file_id: string | null;
  request_counts: { total: number; completed: number; failed: number };
}

export interface Cluster {
  time: number;
  workers: {
    id: string;
    host: string;
    pid: number;
    models: string[];
    capacity: number;
    started_at: string;
    heartbeat_at: string;
  }[];
  queues: {
    model: string;
    waiting: number;
    active: number;
    delayed: number;
    completed: number;
    failed: number;
  }[];
  tokens_processed: number;
  prefix_cache: {
    hits: number;
    misses: number;
    bytes: number;
    evictions: number;
    hit_rate: number | null;
  };
}

/** What a page gets: where to draw, and a signal that fires when the user leaves the page. */
export interface PageContext {
  root: HTMLElement;
  signal: AbortSignal;
  /** The route's argument: `#/jobs/job_1` → `job_1`. */
  argument: string | undefined;
}
