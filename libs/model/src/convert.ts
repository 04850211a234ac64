/**
 * Hugging Face GPT-NeoX checkpoint -> model bundle (`dijiang model convert`).
 *
 * Reads `config.json`, the safetensors weights (single or sharded; F32, F16 or BF16) and, when
 * present, `tokenizer.json`, the chat template of `tokenizer_config.json` and the model card
 * (`README.md`, copied into the bundle). A checkpoint with
 * DiJiang tensors is served as trained; a plain Pythia checkpoint gets the paper's transform step
 * (DiJiang tensors initialised from a seed), or keeps softmax attention with
 * `attention: 'softmax'`. Every tensor is checked (name, shape, finite values, positive D1) before
 * anything is written.
 */
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { z } from 'zod';
import type { BuildProgress } from './build-progress.js';
import { checkBundleFolder, isFile } from './bundle-folder.js';
import { BUNDLE_CARD, bundleManifestSchema, writeBundle } from './bundle.js';
import type { BundleManifest } from './bundle.js';
import { readCheckpointChat } from './chat-template.js';
import type { BundleChat } from './chat-template.js';
import { BYTE_VOCAB_SIZE, modelConfigSchema } from './config.js';
import type { AttentionKind, ModelConfig } from './config.js';
import { assertPositiveD1 } from './decay.js';
import type { WeightPrecision } from './quantize.js';
import { readSafetensorsCheckpoint } from './safetensors.js';
import { HfTokenizer, TOKENIZER_FILE } from './tokenizers/index.js';
import {
  DIJIANG_TENSOR_SUFFIXES,
  expectedTensorShapes,
  initDijiangTensors,
  layerPrefix,
  validateWeights,
} from './weights.js';
import type { Tensor, Weights } from './weights.js';

export const HF_CONFIG_FILE = 'config.json';

/** Seed of the transform step's random DiJiang tensors. @defaultValue 0 */
export const DEFAULT_CONVERT_SEED = 0;

/**
 * The fields of a Hugging Face GPT-NeoX `config.json` the model needs. Defaults are those of
 * transformers' GPTNeoXConfig; other fields (dtype, token ids, ...) are ignored.
 */
const hfConfigSchema = z.object({
  hidden_size: z.number().int().positive(),
  num_attention_heads: z.number().int().positive(),
  num_hidden_layers: z.number().int().positive(),
  intermediate_size: z.number().int().positive(),
  vocab_size: z.number().int().positive(),
  max_position_embeddings: z.number().int().positive(),
  rotary_pct: z.number().default(0.25),
  /** Newer transformers releases call it rope_theta. */
  rotary_emb_base: z.number().optional(),
  rope_theta: z.number().optional(),
  layer_norm_eps: z.number().default(1e-5),
  use_parallel_residual: z
    .literal(true, {
      error:
        'use_parallel_residual must be true (GPT-NeoX parallel residual; the sequential form is not supported)',
    })
    .default(true),
  hidden_act: z
    .literal('gelu', { error: 'hidden_act must be "gelu" (exact erf GELU, as Pythia)' })
    .default('gelu'),
  tie_word_embeddings: z
    .literal(false, { error: 'tie_word_embeddings must be false (embed_out is its own tensor)' })
    .default(false),
});

/** Maps a parsed `config.json` to the model config, or throws naming the bad field. */
export function modelConfigFromHf(
  hfConfig: unknown,
  attention: AttentionKind,
  tokenizer: ModelConfig['tokenizer'],
): ModelConfig {
  const parsed = hfConfigSchema.safeParse(hfConfig);
  if (!parsed.success) throw new Error(`${HF_CONFIG_FILE}: ${z.prettifyError(parsed.error)}`);
  const hf = parsed.data;
  const config = modelConfigSchema.safeParse({
    architecture: 'gpt-neox',
    attention,
    vocabSize: hf.vocab_size,
    hiddenSize: hf.hidden_size,
    numLayers: hf.num_hidden_layers,
    numHeads: hf.num_attention_heads,
    intermediateSize: hf.intermediate_size,
    rotaryPct: hf.rotary_pct,
    rotaryBase: hf.rotary_emb_base ?? hf.rope_theta ?? 10000,
    maxPositionEmbeddings: hf.max_position_embeddings,
    layerNormEps: hf.layer_norm_eps,
    tokenizer,
  });
  if (!config.success) throw new Error(`${HF_CONFIG_FILE}: ${z.prettifyError(config.error)}`);
  return config.data;
}

/** Buffers GPT-NeoX checkpoints may carry that the model recomputes: causal mask, rotary table. */
const IGNORED_BUFFER =
  /^gpt_neox\.layers\.\d+\.attention\.(?:bias|masked_bias|rotary_emb\.inv_freq)$/;

export type DijiangSource = 'checkpoint' | 'transform' | 'none';

export interface HfCheckpoint {
  readonly config: ModelConfig;
  readonly weights: Weights;
  /** Where the DiJiang tensors came from: trained ones in the checkpoint, the seeded transform step, or none (softmax). */
  readonly dijiangSource: DijiangSource;
  /** Path of `tokenizer.json` when the checkpoint has one. */
  readonly tokenizerFile: string | undefined;
  /** The chat template (`tokenizer_config.json`'s, or the one given instead), if any. */
  readonly chat: BundleChat | undefined;
  /** Path of the model card (`README.md`) when the checkpoint has one. */
  readonly cardFile: string | undefined;
}

export interface ReadHfCheckpointOptions {
  /** @defaultValue 'dijiang' */
  readonly attention?: AttentionKind;
  /** Seed of the transform step. @defaultValue {@link DEFAULT_CONVERT_SEED} */
  readonly seed?: number;
  /** A chat template (the Jinja text) that replaces the checkpoint's own. */
  readonly chatTemplate?: string;
}

/** Row-major index -> "[i, j, ...]" for error messages. */
function formatIndex(shape: readonly number[], flatIndex: number): string {
  const coordinates: number[] = [];
  let rest = flatIndex;
  for (let axis = shape.length - 1; axis >= 0; axis--) {
    const size = shape[axis] ?? 1;
    coordinates.unshift(rest % size);
    rest = Math.floor(rest / size);
  }
  return `[${coordinates.join(', ')}]`;
}

function assertFinite(name: string, tensor: Tensor): void {
  const index = tensor.data.findIndex((value) => !Number.isFinite(value));
  if (index >= 0) {
    throw new Error(
      `tensor ${name} has a non-finite value ${tensor.data[index]} at ${formatIndex(tensor.shape, index)}` +
        ' (for D2 tables stored as F16, values past ~65504 overflow: store them as F32 or BF16)',
    );
  }
}

/** Decides where DiJiang tensors come from; a checkpoint with only some of them is refused. */
function dijiangSourceOf(config: ModelConfig, weights: Weights): DijiangSource {
  const names: string[] = [];
  for (let layer = 0; layer < config.numLayers; layer++) {
    for (const suffix of DIJIANG_TENSOR_SUFFIXES) names.push(`${layerPrefix(layer)}${suffix}`);
  }
  const missing = names.filter((name) => !weights.has(name));
  if (missing.length === names.length) return config.attention === 'dijiang' ? 'transform' : 'none';
  if (config.attention === 'softmax') {
    throw new Error(
      'the checkpoint has DiJiang tensors: converting it with softmax attention would discard them',
    );
  }
  if (missing.length > 0) {
    throw new Error(
      `missing tensor ${missing[0] ?? ''}: the checkpoint has some DiJiang tensors but not all (${missing.length} of ${names.length} missing)`,
    );
  }
  return 'checkpoint';
}

/** Reads and validates a Hugging Face GPT-NeoX checkpoint folder into a model config and weights. */
export async function readHfCheckpoint(
  directory: string,
  options: ReadHfCheckpointOptions = {},
): Promise<HfCheckpoint> {
  try {
    const attention = options.attention ?? 'dijiang';
    let hfConfig: unknown;
    try {
      hfConfig = JSON.parse(await readFile(join(directory, HF_CONFIG_FILE), 'utf8'));
    } catch (error) {
      throw new Error(`${HF_CONFIG_FILE} is missing or not valid JSON`, { cause: error });
    }
    const tokenizerPath = join(directory, TOKENIZER_FILE);
    const tokenizerFile = (await isFile(tokenizerPath)) ? tokenizerPath : undefined;
    const cardPath = join(directory, BUNDLE_CARD);
    const cardFile = (await isFile(cardPath)) ? cardPath : undefined;
    const config = modelConfigFromHf(
      hfConfig,
      attention,
      tokenizerFile === undefined ? 'byte' : 'hf',
    );
    if (tokenizerFile === undefined && config.vocabSize !== BYTE_VOCAB_SIZE) {
      throw new Error(
        `no ${TOKENIZER_FILE}, and vocab_size ${config.vocabSize} is not the byte-level vocabulary (${BYTE_VOCAB_SIZE})`,
      );
    }
    if (tokenizerFile !== undefined) {
      const tokenizer = new HfTokenizer(JSON.parse(await readFile(tokenizerFile, 'utf8')));
      if (tokenizer.vocabSize > config.vocabSize) {
        throw new Error(
          `${TOKENIZER_FILE} defines ${tokenizer.vocabSize} ids but vocab_size is ${config.vocabSize}`,
        );
      }
    }

    const chat = await readCheckpointChat(
      directory,
      options.chatTemplate === undefined ? {} : { template: options.chatTemplate },
    );

    const known = expectedTensorShapes({ ...config, attention: 'dijiang' });
    const weights = await readSafetensorsCheckpoint(directory, {
      include: (name) => !IGNORED_BUFFER.test(name),
    });
    for (const name of weights.keys()) {
      if (!known.has(name))
        throw new Error(`unexpected tensor ${name}: not a GPT-NeoX or DiJiang parameter`);
    }
    const dijiangSource = dijiangSourceOf(config, weights);
    if (dijiangSource === 'transform') {
      for (const [name, tensor] of initDijiangTensors(config, options.seed ?? DEFAULT_CONVERT_SEED))
        weights.set(name, tensor);
    }
    validateWeights(config, weights);
    for (const [name, tensor] of weights) assertFinite(name, tensor);
    if (config.attention === 'dijiang') assertPositiveD1(config, weights);
    return { config, weights, dijiangSource, tokenizerFile, chat, cardFile };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`checkpoint ${directory}: ${message}`, { cause: error });
  }
}

export interface ConvertOptions extends ReadHfCheckpointOptions {
  /** Model id in the bundle manifest. @defaultValue the output folder's name */
  readonly id?: string;
  /** Also write the fp16 graph for CUDA workers. @defaultValue false */
  readonly fp16?: boolean;
  /** How the CPU graph stores its weights. @defaultValue 'fp32' */
  readonly weights?: WeightPrecision;
  /** Told how far building and writing the graphs has got (see {@link writeBundle}). */
  readonly onProgress?: BuildProgress;
}

export interface ConvertResult {
  readonly manifest: BundleManifest;
  readonly dijiangSource: DijiangSource;
}

/**
 * Converts the checkpoint folder `from` into a model bundle in `out`. The id and the bundle folder
 * are checked before the checkpoint is read, and the checkpoint (config, tokenizer, every tensor)
 * before anything is written.
 */
export async function convertCheckpoint(
  from: string,
  out: string,
  options: ConvertOptions = {},
): Promise<ConvertResult> {
  const id = options.id ?? basename(resolve(out));
  if (!bundleManifestSchema.shape.id.safeParse(id).success) {
    throw new Error(
      `model id "${id}" must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  await checkBundleFolder(out);
  const checkpoint = await readHfCheckpoint(from, options);
  const manifest = await writeBundle(out, checkpoint.config, checkpoint.weights, {
    id,
    ...(options.fp16 === undefined ? {} : { fp16: options.fp16 }),
    ...(options.weights === undefined ? {} : { weights: options.weights }),
    ...(checkpoint.tokenizerFile === undefined
      ? {}
      : { tokenizerJsonPath: checkpoint.tokenizerFile }),
    ...(checkpoint.chat === undefined ? {} : { chat: checkpoint.chat }),
    ...(checkpoint.cardFile === undefined ? {} : { cardPath: checkpoint.cardFile }),
    ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
  });
  return { manifest, dijiangSource: checkpoint.dijiangSource };
}
