import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUNDLE_MANIFEST, createPresetBundle } from '#model';

/**
 * The model bundle test workers serve: the `tiny` preset (seed 0), model id `tiny-dijiang`,
 * built once per machine (deterministic, so a cached copy is always the same model).
 */
export const TEST_MODEL_ID = 'tiny-dijiang';

export function testModelDir(): string {
  return join(tmpdir(), 'dijiang-test-models-v1', TEST_MODEL_ID);
}

export async function ensureTestModel(): Promise<string> {
  const dir = testModelDir();
  if (!existsSync(join(dir, BUNDLE_MANIFEST))) {
    await createPresetBundle(dir, 'tiny', { seed: 0, id: TEST_MODEL_ID });
  }
  return dir;
}
