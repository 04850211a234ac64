import { Redis } from 'ioredis';
import { expect } from 'vitest';
import { toFile, type OpenAI } from 'openai';
import { JobPriority, type StreamEvent } from '#contracts';
import { Engine, type SamplingParams } from '#engine';
import { testModelDir, TEST_MODEL_ID } from '#testing';
import { waitFor } from '../support/wait.js';

/**
 * Shared by the deployment fault tests: the batch they run, the uninterrupted in-process
 * reference it is checked against, and the stream checks.
 */

/** One line of the test batch: seeded sampling with end-of-text (256) banned, so every line
 *  runs to exactly `maxTokens`. */
export interface BatchRequest {
  customId: string;
  prompt: string;
  seed: number;
  maxTokens: number;
}

export function batchRequests(count: number, maxTokens: number): BatchRequest[] {
  return Array.from({ length: count }, (_unused, line) => ({
    customId: `line-${line}`,
    prompt: `Request ${line}: tell a long story.`,
    seed: 1000 + line,
    maxTokens,
  }));
}

const TEMPERATURE = 0.8;
const TOP_P = 0.95;
const END_OF_TEXT = 256;

/** The batch input file: one `/v1/completions` request per line. */
function batchFile(requests: readonly BatchRequest[]): string {
  return requests
    .map((request) =>
      JSON.stringify({
        custom_id: request.customId,
        method: 'POST',
        url: '/v1/completions',
        body: {
          model: TEST_MODEL_ID,
          prompt: request.prompt,
          max_tokens: request.maxTokens,
          temperature: TEMPERATURE,
          top_p: TOP_P,
          seed: request.seed,
          logit_bias: { [String(END_OF_TEXT)]: -100 },
        },
      }),
    )
    .join('\n');
}

/** Uploads the input file and creates the batch; returns the batch id. */
export async function submitBatch(
  openai: OpenAI,
  requests: readonly BatchRequest[],
): Promise<string> {
  const file = await openai.files.create({
    file: await toFile(Buffer.from(batchFile(requests)), 'batch.jsonl'),
    purpose: 'batch',
  });
  const batch = await openai.batches.create({
    input_file_id: file.id,
    endpoint: '/v1/completions',
    completion_window: '24h',
  });
  return batch.id;
}

/**
 * Waits for the batch to reach `completed`. Requests that fail on the way (Redis restarting, a
 * gateway answering 503) count as "not yet": the outcome is what is asserted, not the path.
 */
export async function waitForBatch(
  openai: OpenAI,
  batchId: string,
  timeoutMs: number,
): Promise<OpenAI.Batch> {
  let batch: OpenAI.Batch | undefined;
  await waitFor(
    async () => {
      batch = await openai.batches.retrieve(batchId).catch(() => undefined);
      if (batch?.status === 'failed' || batch?.status === 'expired') {
        throw new Error(`batch ${batchId} ended ${batch.status}: ${JSON.stringify(batch.errors)}`);
      }
      return batch?.status === 'completed';
    },
    { timeoutMs, intervalMs: 250, message: `batch ${batchId} to complete` },
  );
  if (batch === undefined) throw new Error('unreachable: waitFor returned without a batch');
  return batch;
}

/** The output file's lines as [custom_id, completion text], in file order. */
export async function batchOutputTexts(
  openai: OpenAI,
  batch: OpenAI.Batch,
): Promise<[string, string | undefined][]> {
  const content = await openai.files.content(batch.output_file_id ?? '');
  const lines = (await content.text()).trim().split('\n');
  return lines.map((raw) => {
    const line = JSON.parse(raw) as { custom_id: string; response: { body: OpenAI.Completion } };
    return [line.custom_id, line.response.body.choices[0]?.text];
  });
}

/** The line's job id in the model queue (the gateway numbers lines from 1). */
export function lineJobId(batchId: string, line: number): string {
  return `${batchId}-${line + 1}`;
}

export interface ReferenceRun {
  text: string;
  /** The token sampled at each output index. */
  tokens: number[];
}

/**
 * The independent oracle: the same bundle run uninterrupted in this process by the engine, with
 * no Redis, no queue, no gateway and no worker process.
 */
export class ReferenceGenerator {
  private constructor(private readonly engine: Engine) {}

  static async start(): Promise<ReferenceGenerator> {
    return new ReferenceGenerator(
      await Engine.start({ bundleDir: testModelDir(), intraOpThreads: 1 }),
    );
  }

  async run(request: BatchRequest): Promise<ReferenceRun> {
    const run: ReferenceRun = { text: '', tokens: [] };
    await this.engine.run(
      {
        id: `reference-${request.customId}`,
        kind: 'generate',
        priority: JobPriority.Interactive,
        text: request.prompt,
        prefixBlockTokens: 0,
        generate: {
          sampling: samplingParams(request.seed),
          choice: 0,
          maxTokens: request.maxTokens,
          stop: [],
        },
      },
      {
        start: () => ({ position: 0, skip: 0, replay: [] }),
        onEvent: (event) => {
          if (event.type === 'token') {
            run.tokens[event.index] = event.token;
            run.text += event.text;
          } else if (event.type === 'finished') {
            run.text += event.text;
          }
        },
      },
    );
    return run;
  }

  async close(): Promise<void> {
    await this.engine.close();
  }
}

function samplingParams(seed: number): SamplingParams {
  return {
    temperature: TEMPERATURE,
    topP: TOP_P,
    topK: 0,
    minP: 0,
    presencePenalty: 0,
    frequencyPenalty: 0,
    repetitionPenalty: 1,
    logitBias: new Map([[END_OF_TEXT, -100]]),
    topLogprobs: undefined,
    seed,
  };
}

/**
 * Checks a job's raw stream against the reference: every output index is there, every entry
 * carries the reference's token for its index, the choice ends with `length`, and a reader
 * that de-duplicates by index (as every stream reader does) sees each index exactly once, in
 * order (`any order`: each once, as a reader that also orders by index sees them). Returns how
 * many entries repeated an index: a worker that lost its job (partition, lock
 * expiry) or a command re-sent after a reconnection may append an index again, with the same
 * token, which readers skip.
 */
export function expectStreamMatchesReference(
  events: readonly StreamEvent[],
  reference: ReferenceRun,
  label: string,
  order: 'in order' | 'any order' = 'in order',
): number {
  const tokens = events.flatMap((event) => (event.type === 'token' ? [event] : []));
  for (const token of tokens) {
    expect(token.choice, `${label}: choice`).toBe(0);
    expect(token.token, `${label}: token at index ${token.index}`).toBe(
      reference.tokens[token.index],
    );
  }
  const firstSeen: number[] = [];
  const seen = new Set<number>();
  for (const token of tokens) {
    if (seen.has(token.index)) continue;
    seen.add(token.index);
    firstSeen.push(token.index);
  }
  expect(
    order === 'in order' ? firstSeen : [...firstSeen].sort((a, b) => a - b),
    `${label}: indexes a de-duplicating reader sees`,
  ).toEqual(reference.tokens.map((_token, index) => index));
  const ends = events.flatMap((event) => (event.type === 'choice-end' ? [event] : []));
  expect(ends.length, `${label}: choice-end events`).toBeGreaterThanOrEqual(1);
  for (const end of ends) expect(end.finishReason, `${label}: finish reason`).toBe('length');
  expect(
    events.some((event) => event.type === 'done'),
    `${label}: done`,
  ).toBe(true);
  return tokens.length - firstSeen.length;
}

export interface Readiness {
  workers: { list: { id: string; pid: number; heartbeatAt: string }[] };
}

/** The gateway's readiness answer, with the workers it lists. */
export async function readiness(url: string): Promise<{ status: number; body: Readiness }> {
  const response = await fetch(`${url}/health/ready`);
  return { status: response.status, body: (await response.json()) as Readiness };
}

/** A replication offset (bytes of the replication stream) from `INFO replication`. */
export async function replicationOffset(port: number, field: string): Promise<number> {
  const client = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0 });
  try {
    const info = await client.info('replication');
    return Number(new RegExp(`^${field}:(\\d+)`, 'm').exec(info)?.[1] ?? Number.NaN);
  } finally {
    client.disconnect();
  }
}
