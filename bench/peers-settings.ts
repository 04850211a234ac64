/**
 * Settings of the peers benchmark, from its command line (`npm run bench -- peers --contexts
 * 1024,2048`; bench/run.ts passes options through) with the full context ladder as defaults.
 */
import { isPresetName, type GgufFileType, type PresetName } from '#model';

/**
 * Our weight precisions: each is one graph built by {@link ./peers-ours.ts createOurGraph}.
 * The fp16 graph is not measured: bundles carry it for CUDA workers, and on this CPU it is slower
 * than fp32 despite half the bytes (pythia-70m decode step of the graph alone, 3 alternating runs
 * at a load average of 3.5: fp16 10.7-25.1 ms, fp32 6.7-11.7 ms): onnxruntime's CPU provider has
 * no faster float16 MatMul here.
 */
export type OurPrecision = 'fp32' | 'int8' | 'int4';

/** One row of the precision ladder: the weights both engines hold at about the same bytes. */
export interface PrecisionEntry {
  label: string;
  /** Our bundle's precision; absent where we have none yet. */
  ours?: OurPrecision;
  /** llama.cpp's GGUF weight type; absent where llama.cpp has none. */
  llama?: GgufFileType;
}

/**
 * Each row pairs weights of about the same bytes per parameter: fp32 with f32, our int8 (blocks of
 * 32 with an fp32 scale, 1.125 bytes) with llama.cpp's q8_0 (f16 scale, 1.0625 bytes), our int4
 * (0.625 bytes) with q4_0 (0.5625 bytes).
 */
export const PRECISIONS: readonly PrecisionEntry[] = [
  { label: 'fp32', ours: 'fp32', llama: 'f32' },
  { label: '8-bit', ours: 'int8', llama: 'q8_0' },
  { label: '4-bit', ours: 'int4', llama: 'q4_0' },
];

export interface PeersSettings {
  models: PresetName[];
  contexts: number[];
  precisions: PrecisionEntry[];
  rounds: number;
  decodeTokens: number;
  threads: number;
  concurrent: number;
  concurrentContext: number;
  /** Also run llama.cpp's B=1 ladder at this thread count (0: not); see --help. */
  llamaControlThreads: number;
  /** llama.cpp prefills each rung once per model shape; the other contexts load its KV cache. */
  shareLlamaPrefill: boolean;
  /** Results go to bench/results/<name>.{json,md} and <name>-decode.svg. */
  resultsName: string;
}

/**
 * 1k, 2k (the targets' point), 8k (the prefill prompt), 32k. The full ladder also has 64k
 * (`--contexts 1024,2048,8192,32768,65536`), left out of the default for its cost: llama.cpp's
 * prefill is quadratic in the context, and prefilling pythia-160m to 64k is ~95 TFLOP (~16 of
 * weights, ~79 of attention), about 26 minutes at 60 GFLOP/s on 2 cores, per weight type; to 32k
 * it is ~28 TFLOP. By that arithmetic the default run (2 models, 3 weight rows, 32 sequences at
 * 2k) takes about an hour on an idle 2-core machine, most of it llama.cpp's prefill.
 */
const DEFAULT_CONTEXTS = [1024, 2048, 8192, 32768];

const HELP = `npm run bench -- peers [options]
  --models LIST              presets (default pythia-70m,pythia-160m)
  --contexts LIST            context ladder, ascending (default ${DEFAULT_CONTEXTS.join(',')})
  --precisions LIST          rows of the precision list (default ${PRECISIONS.map((p) => p.label).join(',')})
  --rounds N                 alternating rounds per measurement, median reported (default 3)
  --decode-tokens N          tokens decoded per round (default 32)
  --threads N                compute threads of both engines (default 2)
  --concurrent N             concurrent sequences of the aggregate measurement; 0 skips it (default 32)
  --concurrent-context N     their context (default 2048)
  --llama-control-threads N  also measure llama.cpp's B=1 ladder at N threads, a control for a
                             busy machine where ggml's spinning barriers stall (default 0: off)  --share-llama-prefill 0|1  llama.cpp prefills each rung once per model shape (the first weight
                             row, at --threads) and its other contexts (weight rows, the thread
                             control) load that KV cache from a state file instead: a decode
                             step's cost does not depend on the cache's values, and the quadratic
                             prefill to 64k takes ~26 min per context on 2 cores. Their prefill
                             rows are then reported once. (default 0)
  --results NAME             write bench/results/NAME.{json,md} and NAME-decode.svg (default peers)
`;

function list(value: string, name: string): number[] {
  const numbers = value.split(',').map(Number);
  if (numbers.some((n) => !Number.isInteger(n) || n < 0)) {
    throw new Error(`--${name} takes non-negative integers separated by commas, got ${value}`);
  }
  return numbers;
}

export function parsePeersSettings(argv: readonly string[]): PeersSettings {
  const options = new Map<string, string>();
  for (let index = 0; index < argv.length; index += 2) {
    const name = argv[index] ?? '';
    const value = argv[index + 1];
    if (name === '--help') throw new Error(HELP);
    if (!name.startsWith('--') || value === undefined) {
      throw new Error(`expected --option value pairs, got ${argv.join(' ')}\n${HELP}`);
    }
    options.set(name.slice(2), value);
  }
  const known = [
    'models',
    'contexts',
    'precisions',
    'rounds',
    'decode-tokens',
    'threads',
    'concurrent',
    'concurrent-context',
    'llama-control-threads',
    'share-llama-prefill',
    'results',
  ];
  const unknown = [...options.keys()].filter((name) => !known.includes(name));
  if (unknown.length > 0) throw new Error(`unknown option --${unknown.join(', --')}\n${HELP}`);
  const number = (name: string, fallback: number, min: number): number => {
    const value = options.get(name);
    const parsed = value === undefined ? fallback : Number(value);
    if (!Number.isInteger(parsed) || parsed < min) {
      throw new Error(`--${name} must be an integer >= ${min}, got ${value}`);
    }
    return parsed;
  };
  const flag = (name: string): boolean => {
    const value = options.get(name) ?? '0';
    if (value !== '0' && value !== '1') throw new Error(`--${name} takes 0 or 1, got ${value}`);
    return value === '1';
  };
  const models = (options.get('models') ?? 'pythia-70m,pythia-160m').split(',');
  const badModel = models.find((model) => !isPresetName(model));
  if (badModel !== undefined) throw new Error(`--models: ${badModel} is not a preset`);
  const contexts = options.has('contexts')
    ? list(options.get('contexts') ?? '', 'contexts')
    : DEFAULT_CONTEXTS;
  if (contexts.some((context, index) => index > 0 && context <= (contexts[index - 1] ?? 0))) {
    throw new Error('--contexts must ascend: each sequence is prefilled once up the ladder');
  }
  const labels = (options.get('precisions') ?? PRECISIONS.map((p) => p.label).join(',')).split(',');
  const precisions = labels.map((label) => {
    const entry = PRECISIONS.find((candidate) => candidate.label === label);
    if (entry === undefined) {
      throw new Error(
        `--precisions: no row ${label}; rows: ${PRECISIONS.map((p) => p.label).join(', ')}`,
      );
    }
    return entry;
  });
  return {
    models: models as PresetName[],
    contexts,
    precisions,
    rounds: number('rounds', 3, 1),
    decodeTokens: number('decode-tokens', 32, 2),
    threads: number('threads', 2, 1),
    concurrent: number('concurrent', 32, 0),
    concurrentContext: number('concurrent-context', 2048, 1),
    llamaControlThreads: number('llama-control-threads', 0, 0),
    shareLlamaPrefill: flag('share-llama-prefill'),
    resultsName: resultsName(options.get('results') ?? 'peers'),
  };
}

function resultsName(name: string): string {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) {
    throw new Error(
      `--results takes a file name of lowercase letters, digits and '-', got ${name}`,
    );
  }
  return name;
}
