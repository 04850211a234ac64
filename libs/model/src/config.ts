import { z } from 'zod';

/**
 * Model configuration: the GPT-NeoX (Pythia) backbone with either DiJiang linear attention or the
 * softmax attention it replaces (the baseline). Field meanings follow DIJIANG.md §1-2.
 */
export type AttentionKind = 'dijiang' | 'softmax';
export const ATTENTION_KINDS = ['dijiang', 'softmax'] as const satisfies readonly AttentionKind[];

/** `byte`: ids 0-255 are bytes, 256 is end of text. `hf`: a Hugging Face `tokenizer.json`. */
export type TokenizerKind = 'byte' | 'hf';

export interface ModelConfig {
  architecture: 'gpt-neox';
  attention: AttentionKind;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  /** Head dim d = hiddenSize / numHeads. */
  numHeads: number;
  intermediateSize: number;
  /** Fraction of each head's dims that get RoPE; 0.25 for Pythia. */
  rotaryPct: number;
  /** @defaultValue 10000 */
  rotaryBase: number;
  /** 2048 for Pythia; also the length of the D1/D2 decay tables. */
  maxPositionEmbeddings: number;
  /** @defaultValue 1e-5 */
  layerNormEps: number;
  tokenizer: TokenizerKind;
}

const positiveInt = z.number().int().positive();

export const modelConfigSchema = z
  .strictObject({
    architecture: z.literal('gpt-neox'),
    attention: z.enum(ATTENTION_KINDS),
    vocabSize: positiveInt,
    hiddenSize: positiveInt,
    numLayers: positiveInt,
    numHeads: positiveInt,
    intermediateSize: positiveInt,
    rotaryPct: z.number().min(0).max(1),
    rotaryBase: z.number().positive(),
    // The decay tables need at least two entries: r_t = D1[t] / D1[t-1] continues past the table
    // with the last ratio.
    maxPositionEmbeddings: z.number().int().min(2),
    layerNormEps: z.number().positive(),
    tokenizer: z.enum(['byte', 'hf']),
  })
  .superRefine((config, ctx) => {
    if (config.hiddenSize % config.numHeads !== 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['numHeads'],
        message: `hiddenSize ${config.hiddenSize} is not divisible by numHeads ${config.numHeads}`,
      });
    }
    if (rotaryDimsOf(config.hiddenSize / config.numHeads, config.rotaryPct) % 2 !== 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['rotaryPct'],
        message: `rotary dims floor(headDim * rotaryPct) must be even (NeoX rotate_half)`,
      });
    }
  }) satisfies z.ZodType<ModelConfig>;

export function headDim(config: ModelConfig): number {
  return config.hiddenSize / config.numHeads;
}

function rotaryDimsOf(headDimension: number, rotaryPct: number): number {
  return Math.floor(headDimension * rotaryPct);
}

/** Number of leading dims of each head that RoPE rotates: floor(d * rotaryPct). */
export function rotaryDims(config: ModelConfig): number {
  return rotaryDimsOf(headDim(config), config.rotaryPct);
}

/** DiJiang recurrent state per sequence: layers x heads x d x d float32 values. */
export function stateBytesPerSequence(config: ModelConfig): number {
  if (config.attention === 'softmax') return 0;
  const d = headDim(config);
  return config.numLayers * config.numHeads * d * d * Float32Array.BYTES_PER_ELEMENT;
}

/** Softmax KV cache growth per token: K and V, every layer, float32. 0 for DiJiang. */
export function kvBytesPerToken(config: ModelConfig): number {
  if (config.attention === 'dijiang') return 0;
  return 2 * config.numLayers * config.hiddenSize * Float32Array.BYTES_PER_ELEMENT;
}

export const PRESET_NAMES = [
  'tiny',
  'small',
  'pythia-70m',
  'pythia-160m',
  'pythia-410m',
  'pythia-1b',
  'pythia-2.8b',
] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

export function isPresetName(name: string): name is PresetName {
  return (PRESET_NAMES as readonly string[]).includes(name);
}

interface PresetShape {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
}

const PRESET_SHAPES: Record<PresetName, PresetShape> = {
  // ~0.5M parameters: unit tests.
  tiny: { hiddenSize: 128, numLayers: 2, numHeads: 4, intermediateSize: 512 },
  // ~3.4M parameters: the bundled default model.
  small: { hiddenSize: 256, numLayers: 4, numHeads: 8, intermediateSize: 1024 },
  'pythia-70m': { hiddenSize: 512, numLayers: 6, numHeads: 8, intermediateSize: 2048 },
  'pythia-160m': { hiddenSize: 768, numLayers: 12, numHeads: 12, intermediateSize: 3072 },
  'pythia-410m': { hiddenSize: 1024, numLayers: 24, numHeads: 16, intermediateSize: 4096 },
  'pythia-1b': { hiddenSize: 2048, numLayers: 16, numHeads: 8, intermediateSize: 8192 },
  'pythia-2.8b': { hiddenSize: 2560, numLayers: 32, numHeads: 32, intermediateSize: 10240 },
};

/** Byte-level vocabulary: bytes 0-255 plus id 256 = end of text. */
export const BYTE_VOCAB_SIZE = 257;
/** Pythia's padded vocabulary. */
export const PYTHIA_VOCAB_SIZE = 50304;

export function presetConfig(name: PresetName, attention: AttentionKind): ModelConfig {
  const byteLevel = name === 'tiny' || name === 'small';
  return modelConfigSchema.parse({
    architecture: 'gpt-neox',
    attention,
    vocabSize: byteLevel ? BYTE_VOCAB_SIZE : PYTHIA_VOCAB_SIZE,
    ...PRESET_SHAPES[name],
    rotaryPct: 0.25,
    rotaryBase: 10000,
    maxPositionEmbeddings: 2048,
    layerNormEps: 1e-5,
    tokenizer: byteLevel ? 'byte' : 'hf',
  });
}
