/**
 * Against a real peer (`npm run bench -- peers [options]`, options in bench/peers-settings.ts):
 * llama.cpp (node-llama-cpp's prebuilt CPU binary) running the softmax baseline of each preset,
 * exported to GGUF from the same seeded weights, beside our engine running the DiJiang bundle of
 * that preset; same machine, same thread count, alternating rounds, medians. Before timing, each
 * GGUF file's log-probs are checked against the float64 oracle: a benchmark of two different
 * models would be worthless. Results: bench/results/peers.{json,md} and peers-decode.svg.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { initWeights, presetConfig, stateBytesPerSequence } from '#model';
import { onnxruntimeVersion } from '#engine/runtime';
import { getModuleVersion } from 'node-llama-cpp';
import { describeMachine, machineInfo } from './machine.js';
import { openLlama } from './llama-peer.js';
import { matmulPeakGflops } from './model-measures.js';
import { llamaKvBytesPerToken, memoryBandwidthGBs } from './peers-hardware.js';

/** The longest context of the full ladder, where memory per sequence is compared. */
const LONGEST_CONTEXT = 65536;
import { measureEntry } from './peers-measure.js';
import type { EntryResult } from './peers-rows.js';
import {
  decodePlot,
  decodeTable,
  memoryTable,
  prefillTable,
  targets,
  targetTable,
} from './peers-report.js';
import { parsePeersSettings } from './peers-settings.js';

const settings = parsePeersSettings(process.argv.slice(2));
const args = process.argv.slice(2);
const command = `npm run bench -- peers${args.length > 0 ? ` ${args.join(' ')}` : ''}`;
const machine = machineInfo();
const started = performance.now();
const log = (line: string): void => {
  process.stdout.write(`[${((performance.now() - started) / 1000).toFixed(0)} s] ${line}\n`);
};
const dir = await mkdtemp(join(tmpdir(), 'dijiang-bench-peers-'));
const results: EntryResult[] = [];
let bandwidthGBs: number;
let peakGflops: number;
try {
  bandwidthGBs = memoryBandwidthGBs();
  peakGflops = await matmulPeakGflops(dir, 2048);
  log(
    `memory bandwidth ${bandwidthGBs.toFixed(1)} GB/s; fp32 MatMul peak ${peakGflops.toFixed(1)} GFLOP/s`,
  );
  const llama = await openLlama(settings.threads);
  try {
    for (const preset of settings.models) {
      // The softmax baseline: the same seeded backbone tensors as the DiJiang preset bundle.
      const config = presetConfig(preset, 'softmax');
      const weights = initWeights(config, 0);
      for (const entry of settings.precisions) {
        results.push(await measureEntry(llama, dir, preset, config, weights, entry, settings, log));
      }
    }
  } finally {
    await llama.dispose();
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
const loadAverageAtEnd = loadavg()[0] ?? Number.NaN;
const decode = results.flatMap((result) => result.decode);
const targetList = targets(
  decode,
  settings.models,
  settings.precisions.map((entry) => entry.label),
  settings.concurrent,
  settings.concurrentContext,
);
const seconds = (performance.now() - started) / 1000;
const versions = `onnxruntime-node ${onnxruntimeVersion()}, node-llama-cpp ${await getModuleVersion()}`;
const json = {
  command,
  machine,
  loadAverageAtStart: machine.loadAverageAtStart,
  loadAverageAtEnd,
  versions,
  seconds,
  settings: { ...settings, precisions: settings.precisions },
  memoryBandwidthGBs: bandwidthGBs,
  matmulPeakGflops: peakGflops,
  checks: results.flatMap((result) => (result.check === undefined ? [] : [result.check])),
  decode,
  prefill: results.flatMap((result) => result.prefill),
  memory: results.flatMap((result) => result.memory),
  targets: targetList,
};
const controlNote =
  settings.llamaControlThreads > 0
    ? `; the "llama.cpp (${settings.llamaControlThreads} threads)" rows are a control at fewer threads`
    : '';
const markdown = [
  '# Against a real peer: llama.cpp side by side',
  '',
  `Command: \`${command}\`. Machine: ${describeMachine(machine)}; at the end ${loadAverageAtEnd.toFixed(2)}. ${versions}. ${seconds.toFixed(0)} s.`,
  '',
  `The machine is shared: a load average above its ${machine.cores} cores means other processes competed for them. llama.cpp suffers more from that than onnxruntime: ggml's threads meet at a spinning barrier after every operator, and a descheduled thread costs the others a scheduler slice at each one${controlNote}.`,
  '',
  `Models ${settings.models.join(', ')}; contexts ${settings.contexts.join(', ')}; ${settings.threads} threads for both engines; ${settings.rounds} alternating rounds of ${settings.decodeTokens} greedy tokens per measurement (median reported, every round listed).`,
  '',
  "llama.cpp runs each preset's softmax baseline (GPT-NeoX, the same seeded weights) from a GGUF file written by `model export-gguf`'s writer, with its default float16 KV cache; ours runs the DiJiang bundle of the same preset with fp32 weights and state through the engine's scheduler. Each sequence is prefilled once up the context ladder; every decode round starts from the same context (llama.cpp erases the decoded tokens, ours restarts from a copy of the state).",
  '',
  ...(settings.shareLlamaPrefill
    ? [
        "With `--share-llama-prefill 1`, llama.cpp prefilled each rung once per model (its first weight row, at the shared thread count) and saved the sequence's KV cache to a state file; its other contexts (the other weight rows, the thread control) loaded that file instead of prefilling (node-llama-cpp's `saveStateToFile` / `loadStateFromFile`; same shapes, the same float16 cache). A decode step reads every cached key and value whatever their values, so its cost is that of a cache its own weights had filled; llama.cpp's prefill rows are reported only for the context that ran it.",
        '',
      ]
    : []),
  '## Check before timing: llama.cpp against the float64 oracle',
  '',
  ...json.checks.map(
    (check) =>
      `- ${check.type}: max |log p_llama - log p_oracle| ${check.maxLogProbDifference.toExponential(2)} over ${check.tokens} tokens at positions ${check.positions.join(', ')} (oracle log-probs span ${check.oracleLogProbRange.toFixed(2)}; tolerance ${check.tolerance}): ${check.passed ? 'passed' : 'FAILED'}.`,
  ),
  '',
  '## Targets (ratios from this run)',
  '',
  targetTable(targetList),
  '',
  '## Decode',
  '',
  `Machine: memory bandwidth ${bandwidthGBs.toFixed(1)} GB/s (best 512 MiB memcpy, read + write bytes); fp32 MatMul peak ${peakGflops.toFixed(1)} GFLOP/s (onnxruntime, 2048^3). "MiB read / step" counts weights (all but the input embedding) once per step plus each sequence's state (ours) or float16 KV cache at the context (llama.cpp); GFLOP/s counts the weights' and attention's matmul FLOPs.`,
  '',
  decodeTable(decode, bandwidthGBs, peakGflops),
  '',
  '![B=1 decode tokens/s vs context](peers-decode.svg)',
  '',
  '## Prefill',
  '',
  'Each rung of the ladder is prefilled once from the previous one: the time to the rung is that of one prompt of its length.',
  '',
  prefillTable(results),
  '',
  '## Memory per sequence',
  '',
  "Both engines share the benchmark process: its RSS holds both models and llama.cpp's KV cache allocated for the largest context.",
  '',
  memoryTable(results),
  '',
  ...settings.models.map((preset) => {
    const config = presetConfig(preset, 'dijiang');
    const kv = llamaKvBytesPerToken(config) * LONGEST_CONTEXT;
    const state = stateBytesPerSequence(config);
    return `${preset} at ${LONGEST_CONTEXT} tokens (computed from the shapes): llama.cpp's float16 KV cache ${(kv / 2 ** 20).toFixed(0)} MiB per sequence, our state ${(state / 2 ** 20).toFixed(2)} MiB (${(kv / state).toFixed(0)}x).`;
  }),
  '',
].join('\n');
await mkdir('bench/results', { recursive: true });
const resultsPath = `bench/results/${settings.resultsName}`;
await writeFile(`${resultsPath}.json`, `${JSON.stringify(json, null, 2)}\n`);
await writeFile(`${resultsPath}.md`, markdown);
await writeFile(`${resultsPath}-decode.svg`, decodePlot(decode));
process.stdout.write(`${markdown}\n`);
