/**
 * The peers benchmark's measurements for one (model, precision row): both engines prefill their
 * sequence once up the context ladder, and at each rung run alternating decode rounds that start
 * from the same context (llama.cpp erases the decoded tokens again; ours restarts from a copy of
 * the rung's state). Then the aggregate of N concurrent sequences at one context, alternating too.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  encodedBytes,
  gptNeoxGgufTensors,
  stateBytesPerSequence,
  writeGptNeoxGguf,
  type ModelConfig,
  type PresetName,
  type Weights,
} from '#model';
import type { Llama, LlamaContext, LlamaContextSequence } from 'node-llama-cpp';
import {
  checkAgainstOracle,
  createContext,
  decodeAndTrim,
  prefill as llamaPrefill,
} from './llama-peer.js';
import { createOurGraph, openOurEngine, WEIGHT_BYTES_PER_PARAMETER } from './peers-ours.js';
import type { PeersSettings, PrecisionEntry } from './peers-settings.js';
import {
  dijiangTokenFlops,
  llamaKvBytesPerToken,
  matmulParameters,
  softmaxTokenFlops,
} from './peers-hardware.js';
import { measureConcurrent } from './peers-concurrent.js';
import {
  decodeRow,
  promptIds,
  windowTokensPerSecond,
  type EngineName,
  type Engines,
  type EntryResult,
} from './peers-rows.js';

export async function measureEntry(
  llama: Llama,
  dir: string,
  preset: PresetName,
  config: ModelConfig,
  weights: Weights,
  entry: PrecisionEntry,
  settings: PeersSettings,
  log: (line: string) => void,
): Promise<EntryResult> {
  const result: EntryResult = { decode: [], prefill: [], memory: [] };
  const engines: Engines = {};
  if (entry.llama !== undefined) {
    const path = join(dir, `${preset}-${entry.llama}.gguf`);
    await writeGptNeoxGguf(path, config, weights, { name: preset, type: entry.llama });
    const model = await llama.loadModel({ modelPath: path });
    // Before timing anything: llama.cpp must compute the model we built.
    result.check = await checkAgainstOracle(
      model,
      entry.llama,
      config,
      weights,
      promptIds(config, 0, 16),
      settings.threads,
    );
    log(
      `${preset} ${entry.llama}: llama.cpp vs float64 oracle max |d log p| ${result.check.maxLogProbDifference.toExponential(2)} (tolerance ${result.check.tolerance})`,
    );
    if (!result.check.passed) {
      throw new Error(
        `llama.cpp's ${entry.llama} logits differ from the oracle's: not timing a different model`,
      );
    }
    const type = entry.llama;
    const weightBytes = gptNeoxGgufTensors(config, weights, type)
      .filter((tensor) => tensor.name !== 'token_embd.weight')
      .reduce((sum, tensor) => sum + encodedBytes(tensor), 0);
    engines.llama = { model, weightBytes };
  }
  if (entry.ours !== undefined) {
    const engine = await openOurEngine(
      await createOurGraph(dir, preset, entry.ours),
      settings.threads,
    );
    engines.ours = {
      engine,
      weightBytes: WEIGHT_BYTES_PER_PARAMETER[entry.ours] * matmulParameters(engine.config),
    };
  }
  try {
    await ladder(engines, dir, preset, config, entry, settings, result, log);
  } finally {
    await engines.llama?.model.dispose();
    await engines.ours?.engine.release();
  }
  return result;
}

async function ladder(
  engines: Engines,
  /** Where llama.cpp's shared KV caches are kept (--share-llama-prefill). */
  dir: string,
  preset: string,
  config: ModelConfig,
  entry: PrecisionEntry,
  settings: PeersSettings,
  result: EntryResult,
  log: (line: string) => void,
): Promise<void> {
  const { decodeTokens: tokens, rounds } = settings;
  const maxContext = Math.max(...settings.contexts);
  const ids = promptIds(config, 0, maxContext);
  const endOfText = 256;
  // llama.cpp at the shared thread count, and optionally a control at fewer threads: on an
  // oversubscribed machine ggml's spinning thread barriers lose a scheduler slice per operator.
  const llamaRuns: {
    engine: EngineName;
    context: LlamaContext;
    sequence: LlamaContextSequence;
    ms: number;
    /** Whether every rung so far was prefilled here (not loaded): its prefill rows are real. */
    prefilledAll: boolean;
  }[] = [];
  const threadCounts = [
    settings.threads,
    ...(settings.llamaControlThreads > 0 ? [settings.llamaControlThreads] : []),
  ];
  for (const threads of engines.llama === undefined ? [] : threadCounts) {
    const model = engines.llama?.model;
    if (model === undefined) break;
    const context = await createContext(model, maxContext + tokens + 8, 1, threads);
    llamaRuns.push({
      engine: threads === settings.threads ? 'llama.cpp' : `llama.cpp (${threads} threads)`,
      context,
      sequence: context.getSequence(),
      ms: 0,
      prefilledAll: true,
    });
  }
  const stateFloats = engines.ours?.engine.scheduler.stateFloats ?? 0;
  let ourState: Float32Array = new Float32Array(stateFloats);
  let concurrentState: Float32Array | undefined;
  let ourPrefillMs = 0;
  let position = 0;
  const common = { model: preset, precision: entry.label };
  for (const context of settings.contexts) {
    const segment = ids.slice(position, context);
    for (const run of llamaRuns) {
      const shared = join(dir, `${preset}-${context}.kv`);
      if (settings.shareLlamaPrefill && existsSync(shared)) {
        await run.sequence.loadStateFromFile(shared, { acceptRisk: true });
        run.prefilledAll = false;
        continue;
      }
      const started = performance.now();
      await llamaPrefill(run.sequence, segment);
      run.ms += performance.now() - started;
      if (settings.shareLlamaPrefill) await run.sequence.saveStateToFile(shared);
    }
    if (engines.ours !== undefined) {
      const started = performance.now();
      ourState = await engines.ours.engine.prefill(ourState, position, segment);
      ourPrefillMs += performance.now() - started;
      if (context === settings.concurrentContext) concurrentState = ourState.slice();
    }
    position = context;
    for (const [engine, ms] of [
      ...llamaRuns.filter((run) => run.prefilledAll).map((run) => [run.engine, run.ms] as const),
      ...(engines.ours === undefined ? [] : [['dijiang (ours)', ourPrefillMs] as const]),
    ]) {
      result.prefill.push({
        ...common,
        engine,
        tokens: context,
        seconds: ms / 1000,
        tokensPerSecond: context / (ms / 1000),
      });
    }
    const llamaRates = llamaRuns.map((): number[] => []);
    const ourRates: number[] = [];
    for (let round = 0; round < rounds; round += 1) {
      for (const [index, run] of llamaRuns.entries()) {
        llamaRates[index]?.push(
          windowTokensPerSecond([await decodeAndTrim(run.sequence, tokens, endOfText)]),
        );
      }
      if (engines.ours !== undefined) {
        ourRates.push(
          windowTokensPerSecond(await engines.ours.engine.decode([ourState], context, tokens)),
        );
      }
    }
    for (const [index, run] of llamaRuns.entries()) {
      result.decode.push(
        decodeRow(
          {
            ...common,
            engine: run.engine,
            context,
            sequences: 1,
            bytesPerStep:
              (engines.llama?.weightBytes ?? 0) + llamaKvBytesPerToken(config) * context,
          },
          llamaRates[index] ?? [],
          softmaxTokenFlops(config, context),
        ),
      );
    }
    if (engines.ours !== undefined) {
      result.decode.push(
        decodeRow(
          {
            ...common,
            engine: 'dijiang (ours)',
            context,
            sequences: 1,
            bytesPerStep: engines.ours.weightBytes + stateFloats * 4,
          },
          ourRates,
          dijiangTokenFlops(engines.ours.engine.config),
        ),
      );
    }
    result.memory.push({
      ...common,
      context,
      llamaKvBytes: llamaKvBytesPerToken(config) * context,
      oursStateBytes: stateBytesPerSequence({ ...config, attention: 'dijiang' }),
      rssBytes: process.memoryUsage().rss,
    });
    log(
      `${preset} ${entry.label} context ${context}: ` +
        result.decode
          .filter((row) => row.context === context && row.sequences === 1)
          .map((row) => `${row.engine} ${row.tokensPerSecond.toFixed(1)} tokens/s`)
          .join(', '),
    );
  }
  for (const run of llamaRuns) await run.context.dispose();
  if (settings.concurrent > 0) {
    await measureConcurrent(engines, preset, config, entry, settings, concurrentState, result, log);
  }
}
