/** The engine benchmark's settings and its harness: a real scheduler on the real graph. */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobPriority } from '#contracts';
import {
  ByteTokenizer,
  initWeights,
  presetConfig,
  writeOnnxModel,
  type DecodeStream,
  type ModelConfig,
  type PresetName,
  type Tokenizer,
} from '#model';
import { defaultSchedulerOptions, openSession, runChunk, Scheduler } from '#engine/runtime';
import { DEFAULT_SAMPLING, type SamplingParams, type SequenceRequest } from '#engine';

export const threads = Number(process.env.BENCH_THREADS ?? 2);
export const batches = (process.env.BENCH_BATCHES ?? '1,2,4,8,16,32,64').split(',').map(Number);
export const documentTokens = Number(process.env.BENCH_DOCUMENT_TOKENS ?? 100_000);
export const decodeTokens = Number(process.env.BENCH_DECODE_TOKENS ?? 32);

/** Greedy, with end of text banned so that every sequence decodes exactly its token budget. */
export function greedy(eosTokenId: number): SamplingParams {
  return { ...DEFAULT_SAMPLING, temperature: 0, logitBias: new Map([[eosTokenId, -100]]) };
}

/**
 * Pythia shapes use a 50k BPE vocabulary whose tokenizer.json cannot be shipped here; decode
 * speed does not depend on the text, so those runs feed byte ids and skip detokenization. The
 * sampler still scans the full 50k-logit row every step.
 */
export class IdTokenizer implements Tokenizer {
  readonly kind = 'byte';
  readonly eosTokenId = 0;
  constructor(readonly vocabSize: number) {}
  encode(text: string): number[] {
    return [...new TextEncoder().encode(text)].map((byte) => byte + 1);
  }
  encodeIds(text: string): Int32Array {
    return Int32Array.from(this.encode(text));
  }
  decode(): string {
    return '';
  }
  createDecodeStream(): DecodeStream {
    return { push: () => '', flush: () => '' };
  }
}

export interface Bench {
  config: ModelConfig;
  session: Awaited<ReturnType<typeof openSession>>;
  scheduler: Scheduler;
  generate: (id: string, maxTokens: number) => SequenceRequest;
}

export async function schedulerFor(preset: PresetName): Promise<Bench> {
  const config = presetConfig(preset, 'dijiang');
  const dir = await mkdtemp(join(tmpdir(), 'dijiang-bench-engine-'));
  const path = join(dir, 'model.onnx');
  await writeOnnxModel(config, initWeights(config, 0), path);
  const session = await openSession(path, { intraOpNumThreads: threads });
  const tokenizer =
    config.tokenizer === 'byte' ? new ByteTokenizer() : new IdTokenizer(config.vocabSize);
  const scheduler = new Scheduler(
    config,
    tokenizer,
    (request) => runChunk(session, config, request),
    defaultSchedulerOptions,
  );
  const generate = (id: string, maxTokens: number): SequenceRequest => ({
    id,
    kind: 'generate',
    priority: JobPriority.Interactive,
    text: `Sequence ${id} says hello.`,
    prefixBlockTokens: 0,
    generate: { sampling: greedy(tokenizer.eosTokenId), choice: 0, maxTokens, stop: [] },
  });
  return { config, session, scheduler, generate };
}

/** Ticks until idle; returns each sequence's token arrival times. */
export async function drive(scheduler: Scheduler): Promise<Map<string, number[]>> {
  const arrivals = new Map<string, number[]>();
  const collect = (): void => {
    const now = performance.now();
    for (const event of scheduler.drainEvents()) {
      if (event.type === 'tokenized')
        scheduler.start(event.id, { position: 0, skip: 0, replay: [] });
      if (event.type === 'token') arrivals.set(event.id, [...(arrivals.get(event.id) ?? []), now]);
      if (event.type === 'failed') throw new Error(`${event.id}: ${event.message}`);
    }
  };
  collect();
  collect();
  while (scheduler.hasWork) {
    await scheduler.tick();
    collect();
  }
  return arrivals;
}
