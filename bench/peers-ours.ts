/**
 * Our side of the peers benchmark: the DiJiang graph of the preset (the same seeded backbone as the
 * GGUF file llama.cpp runs, plus DiJiang's attention tensors) on onnxruntime, driven through the
 * engine's real scheduler in-process, as a worker's engine thread drives it. Prefill goes up the
 * context ladder once; each rung keeps a copy of the state, and every decode round starts a
 * sequence from that copy at the rung's position, as a worker resumes a saved state.
 */
import { join } from 'node:path';
import { JobPriority } from '#contracts';
import {
  QUANT_BLOCK_SIZE,
  ByteTokenizer,
  initWeights,
  presetConfig,
  writeOnnxModel,
  type ModelConfig,
  type PresetName,
  type Tokenizer,
} from '#model';
import { defaultSchedulerOptions, openSession, runChunk, Scheduler } from '#engine/runtime';
import type { SequenceRequest } from '#engine';
import { drive, greedy, IdTokenizer } from './engine-harness.js';
import type { OurPrecision } from './peers-settings.js';

/** Tokens per prefill chunk: the engine's own chunk when nothing decodes. */
const PREFILL_CHUNK = defaultSchedulerOptions.maxPrefillChunk;

/**
 * Bytes a decode step reads per weight, by precision, for the achieved-bandwidth column. A
 * precision added to OurPrecision must say its own here (block scales included).
 */
export const WEIGHT_BYTES_PER_PARAMETER: Record<OurPrecision, number> = {
  fp32: 4,
  int8: 1 + 4 / QUANT_BLOCK_SIZE,
  int4: 0.5 + 4 / QUANT_BLOCK_SIZE,
};

/**
 * Our graph of `preset` (DiJiang, seed 0) at a weight precision, in `dir`: the one place a
 * precision becomes a graph, so quantised precisions are built here by passing the precision on.
 * (The graph, not a bundle: Pythia-shaped bundles need a Hugging Face tokenizer.json, which the
 * benchmark, feeding token ids, has no use for.)
 */
export async function createOurGraph(
  dir: string,
  preset: PresetName,
  precision: OurPrecision,
): Promise<{ config: ModelConfig; path: string }> {
  const config = presetConfig(preset, 'dijiang');
  const path = join(dir, `${preset}-dijiang-${precision}.onnx`);
  await writeOnnxModel(config, initWeights(config, 0), path, { weights: precision });
  return { config, path };
}

export interface OurEngine {
  config: ModelConfig;
  scheduler: Scheduler;
  /** The DiJiang state after `ids` were absorbed from `state` at `position` (one sequence). */
  prefill(state: Float32Array, position: number, ids: readonly number[]): Promise<Float32Array>;
  /**
   * `tokens` greedy tokens for each of `states.length` sequences decoding together, each from its
   * own copy of a state at `position`; each sequence's token arrival times.
   */
  decode(states: readonly Float32Array[], position: number, tokens: number): Promise<number[][]>;
  release(): Promise<void>;
}

export async function openOurEngine(
  graph: { config: ModelConfig; path: string },
  threads: number,
): Promise<OurEngine> {
  const { config } = graph;
  const session = await openSession(graph.path, { intraOpNumThreads: threads });
  const tokenizer: Tokenizer =
    config.tokenizer === 'byte' ? new ByteTokenizer() : new IdTokenizer(config.vocabSize);
  const scheduler = new Scheduler(
    config,
    tokenizer,
    (request) => runChunk(session, config, request),
    defaultSchedulerOptions,
  );
  let rounds = 0;
  return {
    config,
    scheduler,
    async prefill(state, position, ids) {
      let current = state;
      for (let offset = 0; offset < ids.length; offset += PREFILL_CHUNK) {
        const chunk = ids.slice(offset, offset + PREFILL_CHUNK);
        const result = await runChunk(session, config, {
          inputIds: chunk,
          batch: 1,
          chunk: chunk.length,
          startPos: [position + offset],
          validLen: [chunk.length],
          state: current,
        });
        if (result.state === undefined) throw new Error('the DiJiang graph returned no state');
        current = result.state;
      }
      return current;
    },
    async decode(states, position, tokens) {
      rounds += 1;
      const ids = states.map((_state, index) => `r${rounds}-s${index}`);
      ids.forEach((id) => {
        const request: SequenceRequest = {
          id,
          kind: 'generate',
          priority: JobPriority.Interactive,
          // One token, fed at `position` after the state: the first decode step.
          text: 'a',
          prefixBlockTokens: 0,
          generate: {
            sampling: greedy(tokenizer.eosTokenId),
            choice: 0,
            maxTokens: tokens,
            stop: [],
          },
        };
        scheduler.submit(request);
      });
      for (const event of scheduler.drainEvents()) {
        if (event.type === 'failed') throw new Error(`${event.id}: ${event.message}`);
      }
      states.forEach((state, index) => {
        scheduler.start(ids[index] ?? '', {
          state: state.slice().buffer,
          position,
          skip: 0,
          replay: [],
        });
      });
      const arrivals = await drive(scheduler);
      return ids.map((id) => arrivals.get(id) ?? []);
    },
    async release() {
      await session.release();
    },
  };
}
