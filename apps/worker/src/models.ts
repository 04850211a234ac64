import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BUNDLE_MANIFEST } from '#model';

/**
 * The model bundles a worker serves: MODEL_DIR itself when it is a bundle, else each sub-folder
 * that holds a bundle manifest. Fails with what to do when there is none.
 */
export function discoverBundles(modelDir: string): string[] {
  const root = resolve(modelDir);
  if (existsSync(join(root, BUNDLE_MANIFEST))) return [root];
  const bundles = existsSync(root)
    ? readdirSync(root)
        .map((name) => join(root, name))
        .filter((dir) => statSync(dir).isDirectory() && existsSync(join(dir, BUNDLE_MANIFEST)))
        .sort()
    : [];
  if (bundles.length === 0) {
    throw new Error(
      `no model bundle in MODEL_DIR=${modelDir}: create one with ` +
        '`npx dijiang model create --preset small --out models/small` (or convert a checkpoint ' +
        'with `npx dijiang model convert`), or point MODEL_DIR at a bundle.',
    );
  }
  return bundles;
}
