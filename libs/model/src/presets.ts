import { checkBundleInputs, writeBundle, type BundleManifest } from './bundle.js';
import { presetConfig, type AttentionKind, type PresetName } from './config.js';
import type { WeightPrecision } from './quantize.js';
import { initWeights } from './weights.js';

/**
 * The model `npm start` and compose serve when MODEL_DIR holds none: the `small` shape trained by
 * tools/train on Austen's novels, committed as a checkpoint with its model card and converted to
 * a bundle on first start.
 */
export const DEFAULT_MODEL_ID = 'austen-small';
/** The default model's checkpoint folder, relative to the project root. */
export const DEFAULT_MODEL_CHECKPOINT = `checkpoints/${DEFAULT_MODEL_ID}`;

/**
 * Writes a bundle of a preset with seeded random weights, for tests and benchmarks: deterministic,
 * so nothing binary needs committing. Random weights produce text-shaped noise, not language.
 */
export async function createPresetBundle(
  dir: string,
  preset: PresetName,
  options: {
    seed?: number;
    attention?: AttentionKind;
    id?: string;
    fp16?: boolean;
    weights?: WeightPrecision;
  } = {},
): Promise<BundleManifest> {
  const attention = options.attention ?? 'dijiang';
  const seed = options.seed ?? 0;
  const config = presetConfig(preset, attention);
  const bundleOptions = {
    id: options.id ?? `${preset}-${attention}`,
    seed,
    ...(options.fp16 === undefined ? {} : { fp16: options.fp16 }),
    ...(options.weights === undefined ? {} : { weights: options.weights }),
  };
  // Before the weights, which take seconds to minutes for the larger presets.
  await checkBundleInputs(dir, config, bundleOptions);
  return writeBundle(dir, config, initWeights(config, seed), bundleOptions);
}
