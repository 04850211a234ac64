import { writeBundle, type BundleManifest } from './bundle.js';
import { presetConfig, type AttentionKind, type PresetName } from './config.js';
import { initWeights } from './weights.js';

/** The model `npm start` serves when MODEL_DIR holds none: small, byte-level, seeded. */
export const DEFAULT_PRESET: PresetName = 'small';

/**
 * Writes a bundle of a preset with seeded random weights: deterministic, so nothing binary needs
 * committing (DESIGN.md decision 7). Random weights produce text-shaped noise, not language.
 */
export async function createPresetBundle(
  dir: string,
  preset: PresetName,
  options: { seed?: number; attention?: AttentionKind; id?: string; fp16?: boolean } = {},
): Promise<BundleManifest> {
  const attention = options.attention ?? 'dijiang';
  const seed = options.seed ?? 0;
  const config = presetConfig(preset, attention);
  return writeBundle(dir, config, initWeights(config, seed), {
    id: options.id ?? `${preset}-${attention}`,
    seed,
    ...(options.fp16 === undefined ? {} : { fp16: options.fp16 }),
  });
}
