import { randomBytes } from 'node:crypto';
import {
  bullJobKey,
  generateResultSchema,
  modelQueueName,
  type BatchLine,
  type BatchRecord,
} from '#contracts';
import { chatResponse, completionResponse } from '../completions/openai-format.js';
import type { FileStore } from '../files/file-store.js';

/**
 * One line of a batch's output or error file, in OpenAI's shape: exactly one of `response` and
 * `error` is set, except for a rejected input line, whose `response` carries the 400 it got.
 */
export function batchFileLine(customId: string | null, response: unknown, error: unknown): string {
  return JSON.stringify({
    id: `batch_req_${randomBytes(12).toString('hex')}`,
    custom_id: customId,
    response,
    error,
  });
}

/** Token totals over a batch's successful lines. */
export interface BatchUsage {
  input: number;
  cached: number;
  output: number;
}

/** What the finalizer knows about one batch once all its lines have finished. */
export interface FinishedBatch {
  record: Pick<BatchRecord, 'endpoint' | 'created_at'>;
  /** BullMQ's key prefix, under which the flow reports each line's result. */
  prefix: string;
  /** The accepted lines, in input order. */
  lines: readonly BatchLine[];
  /**
   * Return values of the lines' jobs, by BullMQ job key (the flow parent's children values).
   * Unlike other responses, batch lines are not rebuilt from their streams: a stream expires a
   * day after its job ends, and a batch may run for its whole completion window, so its early
   * lines' streams can be gone when it finalizes; BullMQ keeps children's values with the parent.
   */
  values: Readonly<Record<string, unknown>>;
  /** Failure messages of the lines' jobs that failed, by BullMQ job key. */
  failures: Readonly<Record<string, string>>;
  /** Error-file lines of the requests rejected while validating. */
  rejects: readonly string[];
  /** Why the batch stopped early, if it did. */
  stop: BatchRecord['stop_reason'];
}

export interface JoinedLines {
  output: string[];
  errors: string[];
  usage: BatchUsage;
}

/**
 * The output and error files' lines, each joined to its request by `custom_id`: a line that
 * produced a result goes to the output file; one that failed, returned a malformed result, or
 * never ran (or was stopped) because the batch was cancelled or expired goes to the error file,
 * after the lines rejected while validating.
 */
export function joinLines(batch: FinishedBatch): JoinedLines {
  const { record, stop } = batch;
  const output: string[] = [];
  const errors = [...batch.rejects];
  const usage: BatchUsage = { input: 0, cached: 0, output: 0 };
  const stopped =
    stop === 'expired'
      ? { code: 'batch_expired', message: 'The batch expired before this request ran.' }
      : { code: 'batch_cancelled', message: 'The batch was cancelled before this request ran.' };
  for (const line of batch.lines) {
    const jobKey = bullJobKey(batch.prefix, modelQueueName(line.model), line.jobId);
    const failure = batch.failures[jobKey];
    const result =
      jobKey in batch.values ? generateResultSchema.safeParse(batch.values[jobKey]) : undefined;
    // A line the stop interrupted before it produced any token did not run.
    const interrupted =
      stop !== undefined &&
      result?.success === true &&
      result.data.choices.every((choice) => choice.finishReason === 'cancelled');
    if (result?.success === true && !interrupted) {
      usage.input += result.data.usage.promptTokens;
      usage.cached += result.data.usage.cachedTokens;
      usage.output += result.data.usage.completionTokens;
      const meta = { id: line.jobId, model: line.model, created: record.created_at };
      const body =
        record.endpoint === '/v1/chat/completions'
          ? chatResponse(meta, result.data)
          : completionResponse(meta, result.data);
      output.push(
        batchFileLine(line.customId, { status_code: 200, request_id: line.jobId, body }, null),
      );
    } else if (failure !== undefined || result?.success === false) {
      const message = failure ?? 'the worker returned a malformed result';
      errors.push(batchFileLine(line.customId, null, { code: 'server_error', message }));
    } else {
      errors.push(batchFileLine(line.customId, null, stopped));
    }
  }
  return { output, errors, usage };
}

/** The batch's `usage` in OpenAI's shape. */
export function openAiBatchUsage(usage: BatchUsage) {
  return {
    input_tokens: usage.input,
    input_tokens_details: { cached_tokens: usage.cached },
    output_tokens: usage.output,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: usage.input + usage.output,
  };
}

/** Writes the output and error files (each only when it has lines); returns their ids. */
export async function writeBatchFiles(
  files: FileStore,
  batch: { id: string; owner: string },
  joined: JoinedLines,
  createdAt: number,
): Promise<{ outputFileId: string | undefined; errorFileId: string | undefined }> {
  const write = async (suffix: string, lines: string[]): Promise<string | undefined> => {
    if (lines.length === 0) return undefined;
    const file = await files.writeLines(
      {
        id: `file-${randomBytes(12).toString('hex')}`,
        owner: batch.owner,
        created_at: createdAt,
        filename: `${batch.id}_${suffix}.jsonl`,
        purpose: 'batch_output',
      },
      lines,
    );
    return file.id;
  };
  return {
    outputFileId: await write('output', joined.output),
    errorFileId: await write('error', joined.errors),
  };
}
