/**
 * The aggregate decode of N concurrent sequences at one context, alternating rounds: llama.cpp
 * with one context of N sequences (node-llama-cpp batches their decodes into one llama_decode),
 * ours with the engine's continuous batching of N sequences started from the rung's state.
 */
import type { ModelConfig } from '#model';
import { createContext, decodeAndTrim, prefill as llamaPrefill } from './llama-peer.js';
import { dijiangTokenFlops, llamaKvBytesPerToken, softmaxTokenFlops } from './peers-hardware.js';
import {
  decodeRow,
  promptIds,
  windowTokensPerSecond,
  type EntryResult,
  type Engines,
} from './peers-rows.js';
import type { PeersSettings, PrecisionEntry } from './peers-settings.js';

export async function measureConcurrent(
  engines: Engines,
  preset: string,
  config: ModelConfig,
  entry: PrecisionEntry,
  settings: PeersSettings,
  rungState: Float32Array | undefined,
  result: EntryResult,
  log: (line: string) => void,
): Promise<void> {
  const {
    concurrent,
    concurrentContext: context,
    decodeTokens: tokens,
    rounds,
    threads,
  } = settings;
  const common = { model: preset, precision: entry.label, context, sequences: concurrent };
  const llamaContext =
    engines.llama === undefined
      ? undefined
      : await createContext(engines.llama.model, context + tokens + 8, concurrent, threads);
  try {
    const sequences = Array.from({ length: llamaContext?.totalSequences ?? 0 }, () =>
      llamaContext?.getSequence(),
    ).filter((sequence) => sequence !== undefined);
    // Every sequence its own prompt, prefilled together (node-llama-cpp batches them).
    await Promise.all(
      sequences.map((sequence, index) =>
        llamaPrefill(sequence, promptIds(config, (index + 1) * context, context)),
      ),
    );
    const state =
      engines.ours === undefined
        ? undefined
        : (rungState ??
          (await engines.ours.engine.prefill(
            new Float32Array(engines.ours.engine.scheduler.stateFloats),
            0,
            promptIds(config, 0, context),
          )));
    const llamaRates: number[] = [];
    const ourRates: number[] = [];
    for (let round = 0; round < rounds; round += 1) {
      if (sequences.length > 0) {
        const arrivals = await Promise.all(
          sequences.map((sequence) => decodeAndTrim(sequence, tokens, 256)),
        );
        llamaRates.push(windowTokensPerSecond(arrivals));
      }
      if (engines.ours !== undefined && state !== undefined) {
        // Our scheduler starts one sequence per tick (one prefill chunk each): each decodes
        // `concurrent` more tokens so that all of them decode together for `tokens` steps.
        const states = Array.from({ length: concurrent }, () => state);
        ourRates.push(
          windowTokensPerSecond(
            await engines.ours.engine.decode(states, context, tokens + concurrent),
          ),
        );
      }
    }
    if (engines.llama !== undefined) {
      result.decode.push(
        decodeRow(
          {
            ...common,
            engine: 'llama.cpp',
            bytesPerStep:
              engines.llama.weightBytes + concurrent * llamaKvBytesPerToken(config) * context,
          },
          llamaRates,
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
            bytesPerStep:
              engines.ours.weightBytes + concurrent * engines.ours.engine.scheduler.stateFloats * 4,
          },
          ourRates,
          dijiangTokenFlops(engines.ours.engine.config),
        ),
      );
    }
    log(
      `${preset} ${entry.label} ${concurrent} sequences at ${context}: ` +
        result.decode
          .filter((row) => row.sequences === concurrent)
          .map((row) => `${row.engine} ${row.tokensPerSecond.toFixed(1)} tokens/s`)
          .join(', '),
    );
  } finally {
    await llamaContext?.dispose();
  }
}
