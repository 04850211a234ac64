import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPresetBundle } from '#model';

/**
 * The model bundle test workers serve: the `tiny` preset (seed 0), model id `tiny-dijiang`. It is
 * built afresh by the global setup of every test run (well under a second), so it always matches
 * the graph builder of the code under test; the folder travels to test files and child processes
 * in DIJIANG_TEST_MODEL_DIR.
 */
export const TEST_MODEL_ID = 'tiny-dijiang';
const TEST_MODEL_ENV = 'DIJIANG_TEST_MODEL_DIR';

export function testModelDir(): string {
  const dir = process.env[TEST_MODEL_ENV];
  if (dir === undefined || dir === '') {
    throw new Error(
      `${TEST_MODEL_ENV} is not set: the test run's global setup builds the test model`,
    );
  }
  return dir;
}

export async function buildTestModel(): Promise<string> {
  const dir = join(mkdtempSync(join(tmpdir(), 'dijiang-test-model-')), TEST_MODEL_ID);
  await createPresetBundle(dir, 'tiny', { seed: 0, id: TEST_MODEL_ID });
  process.env[TEST_MODEL_ENV] = dir;
  return dir;
}
