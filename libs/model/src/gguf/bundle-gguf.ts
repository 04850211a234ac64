/**
 * GGUF export of a model bundle's GPT-NeoX backbone. A bundle's graph folds norm affines into the
 * weights, so the original tensors cannot be read back from it; a bundle built from a seed (a
 * preset, `model create`) records that seed, and its weights are drawn again from it. A DiJiang
 * bundle's backbone tensors are drawn per name exactly as its softmax baseline's are, so both
 * export the same file: the softmax baseline llama.cpp can run. Checkpoints export with
 * {@link exportCheckpointGguf}.
 */
import { basename, resolve } from 'node:path';
import { loadBundle, type BundleManifest } from '../bundle.js';
import type { ModelConfig } from '../config.js';
import { readHfCheckpoint } from '../convert.js';
import { initWeights, type Weights } from '../weights.js';
import { writeGptNeoxGguf, type GgufFileType } from './gptneox-gguf.js';

export interface GgufExportResult {
  readonly path: string;
  readonly bytes: number;
  readonly config: ModelConfig;
  readonly type: GgufFileType;
  /** Where the weights came from, for the command's report. */
  readonly source: string;
}

/** The seeded weights of a bundle built by `model create`; throws for any other bundle. */
export function seededBundleWeights(dir: string, manifest: BundleManifest): Weights {
  if (manifest.seed === undefined) {
    throw new Error(
      `model bundle ${dir} records no initialisation seed (converted from a checkpoint?): its original weights cannot be read back from the graph; export from the checkpoint instead (--from CHECKPOINT_DIR)`,
    );
  }
  return initWeights(manifest.config, manifest.seed);
}

/** Writes the GGUF file of a seeded bundle (`model create`) to `out`. */
export async function exportBundleGguf(
  dir: string,
  out: string,
  type: GgufFileType,
): Promise<GgufExportResult> {
  const { manifest } = await loadBundle(dir);
  const weights = seededBundleWeights(dir, manifest);
  const { bytes } = await writeGptNeoxGguf(out, manifest.config, weights, {
    type,
    name: manifest.id,
  });
  return {
    path: out,
    bytes,
    config: manifest.config,
    type,
    source: `bundle ${manifest.id} (seed ${manifest.seed ?? 'none'}, ${manifest.config.attention} attention)`,
  };
}

/**
 * Writes the GGUF file of a plain Hugging Face GPT-NeoX checkpoint folder (Pythia). A DiJiang
 * checkpoint is refused: its fine-tuned weights under softmax attention would be another model.
 */
export async function exportCheckpointGguf(
  from: string,
  out: string,
  type: GgufFileType,
): Promise<GgufExportResult> {
  const checkpoint = await readHfCheckpoint(from, { attention: 'softmax' });
  const { bytes } = await writeGptNeoxGguf(out, checkpoint.config, checkpoint.weights, {
    type,
    name: basename(resolve(from)),
  });
  return { path: out, bytes, config: checkpoint.config, type, source: `checkpoint ${from}` };
}
