/**
 * Model bundles: a folder with `model.json` (the manifest), `model.onnx` (+ `model.onnx.data` when
 * the weights are large), optionally `model-fp16.onnx` for CUDA workers, and `tokenizer.json` when
 * the tokenizer is 'hf'. `model.onnx` computes in float32 (CPU workers) and stores its weights as
 * the manifest's `weights` says (absent: fp32, as every bundle before that field). Loading verifies every listed file's size and sha256. The manifest may
 * carry the model's chat template (see chat-template.ts), a model card (`README.md`, the
 * checkpoint's own) and, for DiJiang, the form of its decay (see decay.ts).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { z } from 'zod';
import type { BuildProgress } from './build-progress.js';
import { checkBundleFolder, isFile } from './bundle-folder.js';
import { bundleChatSchema, type BundleChat } from './chat-template.js';
import {
  kvBytesPerToken,
  modelConfigSchema,
  stateBytesPerSequence,
  type ModelConfig,
} from './config.js';
import { writeOnnxModel, type ExternalDataMode } from './onnx/export.js';
import type { Precision } from './onnx/model-graph.js';
import { decayForm } from './decay.js';
import { WEIGHT_PRECISIONS, type WeightPrecision } from './quantize.js';
import { parameterCount, validateWeights, type Weights } from './weights.js';

export const BUNDLE_MANIFEST = 'model.json';
export const BUNDLE_TOKENIZER = 'tokenizer.json';
export const BUNDLE_CARD = 'README.md';
export const BUNDLE_GRAPHS = {
  fp32: 'model.onnx',
  fp16: 'model-fp16.onnx',
} as const satisfies Record<Precision, string>;
export const BUNDLE_FORMAT = 1;

const headValuesSchema = z.array(z.array(z.number().positive()));
const decayFormSchema = z.discriminatedUnion('form', [
  z.strictObject({
    form: z.literal('constant'),
    headDecays: headValuesSchema,
    headProducts: headValuesSchema,
  }),
  z.strictObject({ form: z.literal('tables') }),
]);

const fileEntrySchema = z.strictObject({
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
});

export const bundleManifestSchema = z.strictObject({
  format: z.literal(BUNDLE_FORMAT),
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/),
  config: modelConfigSchema,
  tokenizer: z.enum(['byte', 'hf']),
  /**
   * Graph file per compute precision: fp32 (CPU workers) always, fp16 (all-fp16, CUDA workers)
   * when built for CUDA.
   */
  graphs: z.strictObject({ fp32: z.string(), fp16: z.string().optional() }),
  /** How the fp32 graph stores its weights; absent means fp32. */
  weights: z.enum(WEIGHT_PRECISIONS).optional(),
  /** Every file of the bundle except model.json, with its checksum. */
  files: z.record(z.string(), fileEntrySchema),
  parameterCount: z.number().int().positive(),
  stateBytesPerSequence: z.number().int().nonnegative(),
  kvBytesPerToken: z.number().int().nonnegative(),
  /** The seed the weights were initialised from, for models built from a preset. */
  seed: z.number().int().optional(),
  /** How chat messages become this model's prompt; absent: the gateway's default format. */
  chat: bundleChatSchema.optional(),
  /** DiJiang only: per-head constant decay (exact at any length) or position tables. */
  decay: decayFormSchema.optional(),
  /** The model card's file name (data, licence, training, validation loss, limits), if any. */
  card: z.literal(BUNDLE_CARD).optional(),
});
export type BundleManifest = z.infer<typeof bundleManifestSchema>;

export interface WriteBundleOptions {
  /** Model id (file-system and queue-name safe). */
  id: string;
  /** Recorded in the manifest when the weights came from a seeded init. */
  seed?: number;
  /** Also write the fp16 graph for CUDA workers. @defaultValue false */
  fp16?: boolean;
  /** How the fp32 (CPU) graph stores its weights. @defaultValue 'fp32' */
  weights?: WeightPrecision;
  /** @defaultValue 'auto' */
  externalData?: ExternalDataMode;
  /** Path of a Hugging Face tokenizer.json to copy; required when config.tokenizer is 'hf'. */
  tokenizerJsonPath?: string;
  /** The model's chat template, recorded in the manifest. */
  chat?: BundleChat;
  /** Path of a model card (Markdown) to copy into the bundle as README.md. */
  cardPath?: string;
  /** Told how far building and writing each graph has got (see {@link writeOnnxModel}). */
  onProgress?: BuildProgress;
}

/**
 * Checks everything {@link writeBundle} needs except the weights: the id, the tokenizer file the
 * config calls for (and none for the byte tokenizer), the chat template, the model card and the
 * bundle folder. Callers run it before building the weights, which can take minutes, so that a
 * missing input fails at once; writeBundle runs it again.
 */
export async function checkBundleInputs(
  dir: string,
  config: ModelConfig,
  options: WriteBundleOptions,
): Promise<void> {
  if (!bundleManifestSchema.shape.id.safeParse(options.id).success) {
    throw new Error(
      `model id "${options.id}" must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  if (config.tokenizer === 'hf' && options.tokenizerJsonPath === undefined) {
    throw new Error(
      `model ${options.id} uses a Hugging Face tokenizer: give the tokenizer.json to bundle`,
    );
  }
  if (config.tokenizer === 'byte' && options.tokenizerJsonPath !== undefined) {
    throw new Error(
      `model ${options.id} uses the byte tokenizer: a tokenizer.json does not belong in its bundle`,
    );
  }
  for (const [what, path] of [
    ['tokenizer file', options.tokenizerJsonPath],
    ['model card', options.cardPath],
  ] as const) {
    if (path !== undefined && !(await isFile(path))) {
      throw new Error(`model ${options.id}: ${what} ${path} is missing or not a file`);
    }
  }
  if (options.chat !== undefined) {
    const chat = bundleChatSchema.safeParse(options.chat);
    if (!chat.success) {
      throw new Error(`model ${options.id}: invalid chat template: ${z.prettifyError(chat.error)}`);
    }
  }
  await checkBundleFolder(dir);
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function fileEntry(path: string): Promise<z.infer<typeof fileEntrySchema>> {
  return { sha256: await sha256File(path), bytes: (await stat(path)).size };
}

/** Writes a bundle folder (created if missing) and returns its manifest. */
export async function writeBundle(
  dir: string,
  config: ModelConfig,
  weights: Weights,
  options: WriteBundleOptions,
): Promise<BundleManifest> {
  await checkBundleInputs(dir, config, options);
  validateWeights(config, weights);
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  const precisions: Precision[] = options.fp16 === true ? ['fp32', 'fp16'] : ['fp32'];
  for (const precision of precisions) {
    const onnx = await writeOnnxModel(config, weights, join(dir, BUNDLE_GRAPHS[precision]), {
      precision,
      ...(options.weights === undefined ? {} : { weights: options.weights }),
      ...(options.externalData === undefined ? {} : { externalData: options.externalData }),
      ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
    });
    written.push(onnx.modelPath);
    if (onnx.dataPath !== undefined) written.push(onnx.dataPath);
  }
  for (const [source, name] of [
    [options.tokenizerJsonPath, BUNDLE_TOKENIZER],
    [options.cardPath, BUNDLE_CARD],
  ] as const) {
    if (source === undefined) continue;
    const target = join(dir, name);
    await copyFile(source, target);
    written.push(target);
  }
  const files: BundleManifest['files'] = {};
  for (const path of written) files[basename(path)] = await fileEntry(path);
  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT,
    id: options.id,
    config,
    tokenizer: config.tokenizer,
    graphs: options.fp16 === true ? { ...BUNDLE_GRAPHS } : { fp32: BUNDLE_GRAPHS.fp32 },
    ...(options.weights === undefined || options.weights === 'fp32'
      ? {}
      : { weights: options.weights }),
    files,
    parameterCount: parameterCount(config),
    stateBytesPerSequence: stateBytesPerSequence(config),
    kvBytesPerToken: kvBytesPerToken(config),
    ...(options.seed === undefined ? {} : { seed: options.seed }),
    ...(options.chat === undefined ? {} : { chat: options.chat }),
    ...(config.attention === 'dijiang' ? { decay: roundedDecayForm(config, weights) } : {}),
    ...(options.cardPath === undefined ? {} : { card: BUNDLE_CARD }),
  };
  await writeFile(
    join(dir, BUNDLE_MANIFEST),
    `${JSON.stringify(bundleManifestSchema.parse(manifest), null, 2)}\n`,
  );
  return manifest;
}

/** The decay form with values to 8 significant digits: readable, and exact enough to state g. */
function roundedDecayForm(config: ModelConfig, weights: Weights): z.infer<typeof decayFormSchema> {
  const form = decayForm(config, weights);
  if (form.form === 'tables') return form;
  const round = (rows: number[][]): number[][] =>
    rows.map((row) => row.map((value) => Number(value.toPrecision(8))));
  return {
    form: 'constant',
    headDecays: round(form.headDecays),
    headProducts: round(form.headProducts),
  };
}

export interface LoadedBundle {
  readonly dir: string;
  readonly manifest: BundleManifest;
  /** Absolute path of the graph for `precision`. */
  graphPath(precision: Precision): string;
  /** The tokenizer.json path, for 'hf' tokenizers. */
  readonly tokenizerJsonPath?: string;
}

/**
 * Reads and validates `dir/model.json`, then checks that every listed file exists with the
 * recorded size and sha256. Errors name the bundle and the missing or corrupt file.
 */
export async function loadBundle(dir: string): Promise<LoadedBundle> {
  const manifestPath = join(dir, BUNDLE_MANIFEST);
  let text: string;
  try {
    text = await readFile(manifestPath, 'utf8');
  } catch (error) {
    throw new Error(`model bundle ${dir}: missing ${BUNDLE_MANIFEST} (not a model bundle?)`, {
      cause: error,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`model bundle ${dir}: ${BUNDLE_MANIFEST} is not valid JSON`, { cause: error });
  }
  const parsed = bundleManifestSchema.safeParse(json);
  if (!parsed.success) {
    throw new Error(
      `model bundle ${dir}: invalid ${BUNDLE_MANIFEST}: ${z.prettifyError(parsed.error)}`,
    );
  }
  const manifest = parsed.data;
  const required = [
    manifest.graphs.fp32,
    ...(manifest.graphs.fp16 === undefined ? [] : [manifest.graphs.fp16]),
  ];
  if (manifest.tokenizer === 'hf') required.push(BUNDLE_TOKENIZER);
  for (const name of required) {
    if (manifest.files[name] === undefined) {
      throw new Error(`model bundle ${dir}: ${BUNDLE_MANIFEST} lists no checksum for ${name}`);
    }
  }
  for (const [name, expected] of Object.entries(manifest.files)) {
    const path = join(dir, name);
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch (error) {
      throw new Error(`model bundle ${dir}: missing file ${name} (listed in ${BUNDLE_MANIFEST})`, {
        cause: error,
      });
    }
    if (size !== expected.bytes) {
      throw new Error(
        `model bundle ${dir}: ${name} is corrupt: ${size} bytes, ${BUNDLE_MANIFEST} says ${expected.bytes}`,
      );
    }
    const actual = await sha256File(path);
    if (actual !== expected.sha256) {
      throw new Error(
        `model bundle ${dir}: ${name} is corrupt: sha256 ${actual} does not match ${BUNDLE_MANIFEST} (${expected.sha256})`,
      );
    }
  }
  return {
    dir,
    manifest,
    graphPath(precision: Precision): string {
      const graph = manifest.graphs[precision];
      if (graph === undefined) {
        throw new Error(
          `model bundle ${dir} has no ${precision} graph` +
            (precision === 'fp16' ? ' (CUDA workers need one: build the bundle with --fp16)' : ''),
        );
      }
      return join(dir, graph);
    },
    ...(manifest.tokenizer === 'hf' ? { tokenizerJsonPath: join(dir, BUNDLE_TOKENIZER) } : {}),
  };
}
