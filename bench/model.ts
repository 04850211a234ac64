/**
 * Model benchmarks (`npm run bench`, or `node dist/bench/model.js` after `npm run build`) for the
 * pythia-70m shape with DiJiang and with the softmax baseline, in one process on the same
 * onnxruntime CPU session options:
 * - decode-step latency (B = 1) and carried memory per sequence vs context length;
 * - DiJiang decode steps for a batch of sequences (B = 1 … 64);
 * - prefill throughput vs document length, in chunks as the engine runs them;
 * - achieved prefill GFLOP/s as a fraction of a measured fp32 MatMul peak in the same runtime.
 * Results: bench/results/model.json and model.md, with ratios against the targets, never asserted.
 *
 * Environment (defaults in brackets): BENCH_CONTEXTS [1024,4096,16384,65536], BENCH_PREFILL
 * [2048,4096,8192,16384,32768,65536], BENCH_SOFTMAX_PREFILL_MAX [16384: the baseline's prefill is
 * quadratic in the length], BENCH_BATCHES [1,8,32,64], BENCH_THREADS [2], BENCH_PRESET
 * [pythia-70m].
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { onnxruntimeVersion } from '#engine/runtime';
import { describeMachine, machineInfo, markdownTable, verdict } from './machine.js';
import {
  contexts,
  softmaxPrefillMax,
  threads,
  presetName,
  PREFILL_CHUNK,
  DECODE_ROUNDS,
  BATCH_CONTEXT,
  PEAK_SIZE,
  TARGET_FLAT_DECODE,
  TARGET_DECODE_SPEEDUP,
  TARGET_PREFILL_SPREAD,
  TARGET_PEAK_FRACTION,
  median,
  matmulPeakGflops,
  openModel,
  benchDecode,
  benchBatchedDecode,
  benchPrefill,
  type DecodeRow,
} from './model-measures.js';

const machine = machineInfo();
const command = 'npm run bench -- model';
const dir = await mkdtemp(join(tmpdir(), 'dijiang-bench-'));
const peak = await matmulPeakGflops(dir, PEAK_SIZE);
console.log(`fp32 MatMul peak (${PEAK_SIZE}^3, ${threads} threads): ${peak.toFixed(1)} GFLOP/s`);
const dijiangModel = await openModel(dir, 'dijiang');
const softmaxModel = await openModel(dir, 'softmax');
const decode = await benchDecode([dijiangModel, softmaxModel]);
const batched = await benchBatchedDecode(dijiangModel);
const dijiangPrefill = await benchPrefill(dijiangModel, peak);
await dijiangModel.session.release();
const softmaxPrefill = await benchPrefill(softmaxModel, peak);
await softmaxModel.session.release();
await rm(dir, { recursive: true, force: true });

const dijiangDecode = decode.get('dijiang') ?? [];
const softmaxDecode = decode.get('softmax') ?? [];
const firstContext = contexts[0] ?? 0;
const lastContext = contexts[contexts.length - 1] ?? 0;
const stepAt = (rows: readonly DecodeRow[], context: number): number =>
  rows.find((row) => row.context === context)?.stepMs ?? Number.NaN;
const prefillRates = dijiangPrefill.map((row) => row.medianChunkTokensPerSecond);
const summary = {
  dijiangStepLastOverFirstContext:
    stepAt(dijiangDecode, lastContext) / stepAt(dijiangDecode, firstContext),
  softmaxOverDijiangStepAtLastContext:
    stepAt(softmaxDecode, lastContext) / stepAt(dijiangDecode, lastContext),
  dijiangPrefillSpread:
    (Math.max(...prefillRates) - Math.min(...prefillRates)) / Math.max(...prefillRates),
  dijiangPrefillPeakFraction: median(dijiangPrefill.map((row) => row.gflops)) / peak,
};
const targets = {
  dijiangStepLastOverFirstContext: {
    target: `<= ${TARGET_FLAT_DECODE}`,
    met: summary.dijiangStepLastOverFirstContext <= TARGET_FLAT_DECODE,
  },
  softmaxOverDijiangStepAtLastContext: {
    target: `>= ${TARGET_DECODE_SPEEDUP}`,
    met: summary.softmaxOverDijiangStepAtLastContext >= TARGET_DECODE_SPEEDUP,
  },
  dijiangPrefillSpread: {
    target: `<= ${TARGET_PREFILL_SPREAD}`,
    met: summary.dijiangPrefillSpread <= TARGET_PREFILL_SPREAD,
  },
  dijiangPrefillPeakFraction: {
    target: `>= ${TARGET_PEAK_FRACTION}`,
    met: summary.dijiangPrefillPeakFraction >= TARGET_PEAK_FRACTION,
  },
};
const loadAverageAtEnd = loadavg()[0] ?? Number.NaN;
await mkdir('bench/results', { recursive: true });
await writeFile(
  'bench/results/model.json',
  `${JSON.stringify(
    {
      preset: presetName,
      command,
      machine: { ...machine, loadAverageAtEnd },
      runtime: { onnxruntime: onnxruntimeVersion(), executionProvider: 'cpu', threads },
      settings: {
        prefillChunk: PREFILL_CHUNK,
        softmaxPrefillMax,
        decodeRounds: DECODE_ROUNDS,
        batchContext: BATCH_CONTEXT,
        softmaxDecodeCache: 'synthetic zero KV cache of the full shape',
      },
      matmulPeakGflops: peak,
      summary,
      targets,
      decode: { dijiang: dijiangDecode, softmax: softmaxDecode },
      batchedDecode: { dijiang: batched },
      prefill: { dijiang: dijiangPrefill, softmax: softmaxPrefill },
    },
    null,
    2,
  )}\n`,
);

const fixed = (value: number, digits: number): string =>
  Number.isFinite(value) ? value.toFixed(digits) : '-';
const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(2);
const markdown = [
  `# Model benchmarks: ${presetName} shape, onnxruntime ${onnxruntimeVersion()} CPU, ${threads} threads`,
  '',
  `Command: \`${command}\`. Machine: ${describeMachine(machine)}; at the end ${loadAverageAtEnd.toFixed(2)}. The machine is shared: a load average above its core count means other processes competed for the CPUs and the timings are pessimistic.`,
  '',
  `fp32 MatMul peak (${PEAK_SIZE}x${PEAK_SIZE} by ${PEAK_SIZE}x${PEAK_SIZE}, best of 7): ${peak.toFixed(1)} GFLOP/s.`,
  '',
  '## Targets',
  '',
  markdownTable(
    ['measure', 'value', 'target', 'verdict'],
    [
      [
        `DiJiang decode step at ${lastContext} / at ${firstContext}`,
        fixed(summary.dijiangStepLastOverFirstContext, 3),
        targets.dijiangStepLastOverFirstContext.target,
        verdict(targets.dijiangStepLastOverFirstContext.met),
      ],
      [
        `softmax / DiJiang decode step at ${lastContext}`,
        `${fixed(summary.softmaxOverDijiangStepAtLastContext, 2)}x`,
        targets.softmaxOverDijiangStepAtLastContext.target,
        verdict(targets.softmaxOverDijiangStepAtLastContext.met),
      ],
      [
        'DiJiang prefill median-chunk tokens/s spread over lengths (max - min) / max',
        fixed(summary.dijiangPrefillSpread, 3),
        targets.dijiangPrefillSpread.target,
        verdict(targets.dijiangPrefillSpread.met),
      ],
      [
        'DiJiang prefill GFLOP/s / MatMul peak (median over lengths)',
        fixed(summary.dijiangPrefillPeakFraction, 2),
        targets.dijiangPrefillPeakFraction.target,
        verdict(targets.dijiangPrefillPeakFraction.met),
      ],
    ],
  ),
  '',
  '## Decode step (B = 1) vs context',
  '',
  `Median of ${DECODE_ROUNDS} steps through \`runChunk\`, both attention kinds and all contexts interleaved. The softmax baseline is fed a synthetic zero KV cache of the full shape (a step's cost does not depend on the values); its step includes copying the cache in and the present cache out, as the runtime's past/present interface requires.`,
  '',
  markdownTable(
    [
      'context',
      'DiJiang ms',
      'DiJiang state MiB/seq',
      'softmax ms',
      'softmax KV MiB/seq',
      'softmax / DiJiang',
    ],
    contexts.map((context) => {
      const a = dijiangDecode.find((row) => row.context === context);
      const b = softmaxDecode.find((row) => row.context === context);
      return [
        String(context),
        fixed(a?.stepMs ?? Number.NaN, 2),
        a === undefined ? '-' : mib(a.bytesPerSequence),
        fixed(b?.stepMs ?? Number.NaN, 2),
        b === undefined ? '-' : mib(b.bytesPerSequence),
        fixed((b?.stepMs ?? Number.NaN) / (a?.stepMs ?? Number.NaN), 2),
      ];
    }),
  ),
  '',
  `## DiJiang batched decode (T = 1, context ${BATCH_CONTEXT})`,
  '',
  markdownTable(
    ['batch', 'ms/step', 'tokens/s'],
    batched.map((row) => [String(row.batch), fixed(row.stepMs, 2), fixed(row.tokensPerSecond, 0)]),
  ),
  '',
  `## Prefill (chunks of ${PREFILL_CHUNK} tokens)`,
  '',
  `The softmax baseline stops at ${softmaxPrefillMax} tokens: its prefill is quadratic in the length (every chunk attends to, and copies, the whole cache). tokens/s is the whole document's; median-chunk tokens/s is ${PREFILL_CHUNK} tokens over the median time of the document's full chunks, which leaves out the chunks slowed by other processes on a shared machine (the flatness target uses it).`,
  '',
  markdownTable(
    [
      'length',
      'attention',
      'seconds',
      'tokens/s',
      'median-chunk tokens/s',
      'GFLOP/s',
      'fraction of MatMul peak',
    ],
    [
      ...dijiangPrefill.map((row) => ({ ...row, attention: 'dijiang' })),
      ...softmaxPrefill.map((row) => ({ ...row, attention: 'softmax' })),
    ].map((row) => [
      String(row.length),
      row.attention,
      fixed(row.seconds, 2),
      fixed(row.tokensPerSecond, 0),
      fixed(row.medianChunkTokensPerSecond, 0),
      fixed(row.gflops, 1),
      fixed(row.gflops / peak, 2),
    ]),
  ),
  '',
  'GFLOP/s counts the matmul work of the forward pass (linear layers, feature maps, intra-chunk and state products, the LM head once per chunk); element-wise work is not counted.',
  '',
].join('\n');
await writeFile('bench/results/model.md', markdown);
console.log(markdown);
