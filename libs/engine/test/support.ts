/**
 * A tiny DiJiang model with decisive logits, driven through the real onnxruntime graph, and a
 * helper that runs a scheduler to completion the way the engine thread does.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobPriority } from '#contracts';
import {
  ByteTokenizer,
  presetConfig,
  writeOnnxModel,
  type ModelConfig,
  type Weights,
} from '#model';
import {
  defaultSchedulerOptions,
  openSession,
  runChunk,
  Scheduler,
  type ChunkRequest,
  type RunChunk,
  type SchedulerOptions,
} from '#engine/runtime';
import {
  DEFAULT_SAMPLING,
  type SequenceEvent,
  type SequenceRequest,
  type SequenceStart,
  type SamplingParams,
} from '#engine';
import { testWeights } from '../../model/test/support.js';

export interface TestModel {
  config: ModelConfig;
  weights: Weights;
  tokenizer: ByteTokenizer;
  run: RunChunk;
}

let shared: Promise<TestModel> | undefined;

/** The `tiny` preset with weights that make attention matter; built once per test file. */
export async function tinyModel(): Promise<TestModel> {
  shared ??= (async () => {
    const config = presetConfig('tiny', 'dijiang');
    const weights = testWeights(config, 11);
    const dir = await mkdtemp(join(tmpdir(), 'dijiang-engine-'));
    const path = join(dir, 'model.onnx');
    await writeOnnxModel(config, weights, path);
    const session = await openSession(path, { intraOpNumThreads: 1 });
    return {
      config,
      weights,
      tokenizer: new ByteTokenizer(),
      run: (request: ChunkRequest) => runChunk(session, config, request),
    };
  })();
  return shared;
}

export const greedy: SamplingParams = { ...DEFAULT_SAMPLING, temperature: 0 };

export function generateRequest(
  id: string,
  text: string,
  options: {
    maxTokens?: number;
    sampling?: SamplingParams;
    stop?: string[];
    priority?: JobPriority;
  } = {},
): SequenceRequest {
  return {
    id,
    kind: 'generate',
    priority: options.priority ?? JobPriority.Interactive,
    text,
    prefixBlockTokens: 0,
    generate: {
      sampling: options.sampling ?? greedy,
      choice: 0,
      maxTokens: options.maxTokens ?? 12,
      stop: options.stop ?? [],
    },
  };
}

/**
 * Submits the requests, starts each fresh (or as `starts` says), ticks until nothing is left,
 * and returns every event per sequence id.
 */
export async function runAll(
  model: TestModel,
  requests: readonly SequenceRequest[],
  options: {
    scheduler?: Partial<SchedulerOptions>;
    starts?: Map<string, SequenceStart>;
    /** Called after every tick, e.g. to cancel. */
    afterTick?: (scheduler: Scheduler, events: SequenceEvent[]) => void;
  } = {},
): Promise<Map<string, SequenceEvent[]>> {
  const scheduler = new Scheduler(model.config, model.tokenizer, model.run, {
    ...defaultSchedulerOptions,
    ...options.scheduler,
  });
  const byId = new Map<string, SequenceEvent[]>();
  const record = (events: SequenceEvent[]): void => {
    for (const event of events) {
      byId.set(event.id, [...(byId.get(event.id) ?? []), event]);
      if (event.type === 'tokenized') {
        scheduler.start(
          event.id,
          options.starts?.get(event.id) ?? { position: 0, skip: 0, replay: [] },
        );
      }
    }
  };
  for (const request of requests) scheduler.submit(request);
  record(scheduler.drainEvents());
  record(scheduler.drainEvents());
  while (scheduler.hasWork) {
    await scheduler.tick();
    const events = scheduler.drainEvents();
    record(events);
    options.afterTick?.(scheduler, events);
  }
  return byId;
}

export function tokensOf(events: readonly SequenceEvent[] | undefined): number[] {
  return (events ?? []).flatMap((event) => (event.type === 'token' ? [event.token] : []));
}

export function textOf(events: readonly SequenceEvent[] | undefined): string {
  return (events ?? [])
    .map((event) => (event.type === 'token' || event.type === 'finished' ? event.text : ''))
    .join('');
}

export function finishedOf(events: readonly SequenceEvent[] | undefined) {
  const finished = (events ?? []).find((event) => event.type === 'finished');
  if (finished?.type !== 'finished') {
    const failure = (events ?? []).find((event) => event.type === 'failed');
    throw new Error(`sequence did not finish: ${JSON.stringify(failure)}`);
  }
  return finished;
}

/**
 * The independent reference for greedy decoding: feed the prompt token by token through the
 * graph, then take the argmax of each step's logits — no scheduler, no batching, no chunking.
 */
export async function plainGreedy(
  model: TestModel,
  prompt: string,
  maxTokens: number,
): Promise<number[]> {
  const ids = model.tokenizer.encode(prompt);
  let state: Float32Array | undefined;
  let logits: Float32Array = new Float32Array();
  let position = 0;
  const feed = async (token: number): Promise<void> => {
    const result = await model.run({
      inputIds: [token],
      batch: 1,
      chunk: 1,
      startPos: [position],
      validLen: [1],
      ...(state === undefined ? {} : { state }),
    });
    state = result.state;
    logits = result.logits;
    position += 1;
  };
  for (const id of ids) await feed(id);
  const output: number[] = [];
  while (output.length < maxTokens) {
    let best = 0;
    logits.forEach((value, index) => {
      if (value > (logits[best] ?? -Infinity)) best = index;
    });
    if (best === model.tokenizer.eosTokenId) break;
    output.push(best);
    await feed(best);
  }
  return output;
}
