/**
 * Engine benchmarks (after `npm run build`: `node dist/bench/engine.js`), measured side by side in
 * one run with the real onnxruntime graph and the real scheduler:
 * 1. decode throughput vs batch size (1 … 64) for the `small` and `pythia-70m` shapes, and the
 *    ratio to B = 1 (target: >= 8x at B = 32 for pythia-70m);
 * 2. interference: 8 interactive streams decoding while a 100k-token document is scored on the
 *    same engine — their per-token latency p95 against the unloaded p95 (target: within 2x).
 * Results: bench/results/engine.json and engine.md. Ratios are reported, never asserted.
 *
 * Environment: BENCH_THREADS (default 2), BENCH_BATCHES (default 1,2,4,8,16,32,64),
 * BENCH_DOCUMENT_TOKENS (default 100000), BENCH_DECODE_TOKENS (default 32: tokens per sequence
 * beyond the batch size).
 */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ByteTokenizer,
  initWeights,
  openSession,
  presetConfig,
  runChunk,
  writeOnnxModel,
  type DecodeStream,
  type ModelConfig,
  type PresetName,
  type Tokenizer,
} from '#model';
import { DEFAULT_SAMPLING, Scheduler, type SamplingParams, type SequenceRequest } from '#engine';

const threads = Number(process.env.BENCH_THREADS ?? 2);
const batches = (process.env.BENCH_BATCHES ?? '1,2,4,8,16,32,64').split(',').map(Number);
const documentTokens = Number(process.env.BENCH_DOCUMENT_TOKENS ?? 100_000);
const decodeTokens = Number(process.env.BENCH_DECODE_TOKENS ?? 32);

/** Greedy, with end of text banned so that every sequence decodes exactly its token budget. */
function greedy(eosTokenId: number): SamplingParams {
  return { ...DEFAULT_SAMPLING, temperature: 0, logitBias: new Map([[eosTokenId, -100]]) };
}

/**
 * Pythia shapes use a 50k BPE vocabulary whose tokenizer.json cannot be shipped here; decode
 * speed does not depend on the text, so those runs feed byte ids and skip detokenization. The
 * sampler still scans the full 50k-logit row every step.
 */
class IdTokenizer implements Tokenizer {
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

interface Bench {
  config: ModelConfig;
  scheduler: Scheduler;
  generate: (id: string, maxTokens: number) => SequenceRequest;
}

async function schedulerFor(preset: PresetName): Promise<Bench> {
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
    {
      maxBatch: 64,
      maxPrefillChunk: 512,
      minPrefillChunk: 16,
    },
  );
  const generate = (id: string, maxTokens: number): SequenceRequest => ({
    id,
    kind: 'generate',
    priority: 0,
    text: `Sequence ${id} says hello.`,
    prefixBlockTokens: 0,
    generate: { sampling: greedy(tokenizer.eosTokenId), choice: 0, maxTokens, stop: [] },
  });
  return { config, scheduler, generate };
}

/** Ticks until idle; returns each sequence's token arrival times. */
async function drive(scheduler: Scheduler): Promise<Map<string, number[]>> {
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

interface ThroughputRow {
  preset: string;
  batch: number;
  tokensPerSecond: number;
  ratioToBatch1: number;
}

/**
 * Decode tokens/s at batch B. Prompts are prefilled one per tick while earlier sequences already
 * decode, so only the window in which all B sequences are decoding — after the last one's first
 * token and before the first one's last token — is counted. Each sequence decodes B +
 * BENCH_DECODE_TOKENS tokens so that this window exists.
 */
async function decodeThroughput(preset: PresetName): Promise<ThroughputRow[]> {
  const { scheduler, generate } = await schedulerFor(preset);
  // One short run first, so that first-run allocations are not timed.
  scheduler.submit(generate('warmup', 4));
  await drive(scheduler);
  const rows: ThroughputRow[] = [];
  for (const batch of batches) {
    for (let index = 0; index < batch; index += 1) {
      scheduler.submit(generate(`s${index}`, 3 * batch + decodeTokens));
    }
    const arrivals = [...(await drive(scheduler)).values()];
    const start = Math.max(...arrivals.map((times) => times[0] ?? 0));
    const end = Math.min(...arrivals.map((times) => times.at(-1) ?? 0));
    const tokens = arrivals.flat().filter((time) => time > start && time <= end).length;
    const tokensPerSecond = tokens / ((end - start) / 1000);
    rows.push({
      preset,
      batch,
      tokensPerSecond,
      ratioToBatch1: tokensPerSecond / (rows[0]?.tokensPerSecond ?? tokensPerSecond),
    });
    process.stdout.write(`${preset} B=${batch}: ${tokensPerSecond.toFixed(1)} tokens/s\n`);
  }
  return rows;
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

function gaps(arrivals: Map<string, number[]>, ids: readonly string[]): number[] {
  return ids.flatMap((id) => {
    const times = arrivals.get(id) ?? [];
    return times.slice(1).map((time, index) => time - (times[index] ?? time));
  });
}

interface Interference {
  preset: string;
  streams: number;
  documentTokens: number;
  unloadedP50Ms: number;
  unloadedP95Ms: number;
  loadedP50Ms: number;
  loadedP95Ms: number;
  p95Ratio: number;
  documentTokensPerSecond: number;
}

async function interference(preset: PresetName): Promise<Interference> {
  const { scheduler, generate } = await schedulerFor(preset);
  const streams = Array.from({ length: 8 }, (_unused, index) => `i${index}`);
  const tokens = 200;
  for (const id of streams) scheduler.submit(generate(id, tokens));
  const unloaded = gaps(await drive(scheduler), streams);

  const words = 'The document goes on and on, and every token must be scored. ';
  const document = words
    .repeat(Math.ceil(documentTokens / words.length))
    .slice(0, documentTokens - 1);
  scheduler.submit({
    id: 'document',
    kind: 'score',
    priority: 2,
    text: document,
    prefixBlockTokens: 0,
    score: { windowTokens: undefined },
  });
  // Let the document's prefill start, then run the interactive streams beside it.
  await scheduler.tick();
  for (const event of scheduler.drainEvents()) {
    if (event.type === 'tokenized') scheduler.start(event.id, { position: 0, skip: 0, replay: [] });
  }
  await scheduler.tick();
  scheduler.drainEvents();
  for (const id of streams) scheduler.submit(generate(`${id}-loaded`, tokens));
  const started = performance.now();
  const loadedArrivals = await drive(scheduler);
  const documentSeconds = (performance.now() - started) / 1000;
  const loaded = gaps(
    loadedArrivals,
    streams.map((id) => `${id}-loaded`),
  );
  return {
    preset,
    streams: streams.length,
    documentTokens,
    unloadedP50Ms: percentile(unloaded, 50),
    unloadedP95Ms: percentile(unloaded, 95),
    loadedP50Ms: percentile(loaded, 50),
    loadedP95Ms: percentile(loaded, 95),
    p95Ratio: percentile(loaded, 95) / percentile(unloaded, 95),
    documentTokensPerSecond: documentTokens / documentSeconds,
  };
}

async function main(): Promise<void> {
  const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, ${threads} intra-op thread(s), Node ${process.version}`;
  const throughput = [
    ...(await decodeThroughput('small')),
    ...(await decodeThroughput('pythia-70m')),
  ];
  const interferenceResult = await interference('small');
  const at32 = throughput.find((row) => row.preset === 'pythia-70m' && row.batch === 32);
  const results = {
    machine,
    command: 'npm run bench (node dist/bench/engine.js)',
    decodeTokensPerSequence: decodeTokens,
    throughput,
    interference: interferenceResult,
    targets: {
      pythia70mBatch32Ratio: {
        value: at32?.ratioToBatch1 ?? null,
        target: 8,
        met: (at32?.ratioToBatch1 ?? 0) >= 8,
      },
      interferenceP95Ratio: {
        value: interferenceResult.p95Ratio,
        target: 2,
        met: interferenceResult.p95Ratio <= 2,
      },
    },
  };
  const lines = [
    '# Engine benchmarks',
    '',
    `Machine: ${machine}. Command: \`npm run bench -- engine\`. Greedy decoding; throughput counts only the steps in which all B sequences decode.`,
    '',
    '## Decode throughput vs batch size',
    '',
    '| shape | batch | tokens/s | ratio to B=1 |',
    '| --- | ---: | ---: | ---: |',
    ...throughput.map(
      (row) =>
        `| ${row.preset} | ${row.batch} | ${row.tokensPerSecond.toFixed(1)} | ${row.ratioToBatch1.toFixed(2)}x |`,
    ),
    '',
    `Target: >= 8x at B=32 for pythia-70m: ${results.targets.pythia70mBatch32Ratio.met ? 'met' : 'not met'} (${(at32?.ratioToBatch1 ?? 0).toFixed(2)}x).`,
    '',
    '## Interference',
    '',
    `${interferenceResult.streams} interactive streams (small shape) decoding while a ${interferenceResult.documentTokens}-token document is scored on the same engine.`,
    '',
    '| | p50 per-token latency | p95 per-token latency |',
    '| --- | ---: | ---: |',
    `| unloaded | ${interferenceResult.unloadedP50Ms.toFixed(2)} ms | ${interferenceResult.unloadedP95Ms.toFixed(2)} ms |`,
    `| with the document | ${interferenceResult.loadedP50Ms.toFixed(2)} ms | ${interferenceResult.loadedP95Ms.toFixed(2)} ms |`,
    '',
    `p95 ratio ${interferenceResult.p95Ratio.toFixed(2)}x (target <= 2x: ${results.targets.interferenceP95Ratio.met ? 'met' : 'not met'}); the document advanced at ${interferenceResult.documentTokensPerSecond.toFixed(0)} tokens/s meanwhile.`,
    '',
  ];
  await mkdir('bench/results', { recursive: true });
  await writeFile('bench/results/engine.json', `${JSON.stringify(results, null, 2)}\n`);
  await writeFile('bench/results/engine.md', lines.join('\n'));
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
