/**
 * The import-boundary check (`npm run cycles` runs scripts/check-boundaries.js): each rule fails
 * a small project that breaks it, a project that keeps to them passes, and so does this one.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const checker = join(repoRoot, 'scripts/check-boundaries.js');

/** A project that keeps every boundary, with the imports each rule allows. */
const cleanProject: Record<string, string> = {
  'package.json': JSON.stringify({ type: 'module' }),
  'tsconfig.json': JSON.stringify({
    compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', noEmit: true },
    include: ['apps', 'libs', 'test'],
  }),
  'libs/engine/src/ort/run.ts': "import ort from 'onnxruntime-node';\nexport const run = ort;\n",
  'libs/engine/src/index.ts': 'export const client = 1;\n',
  // The engine thread uses the owner; it is started by URL, so no entry imports it.
  'libs/engine/src/engine-thread.ts': "import { run } from './ort/run.js';\nexport { run };\n",
  'libs/model/src/config.ts': 'export const config = 1;\n',
  'apps/worker/src/helper.ts': 'export const helper = 1;\n',
  'apps/worker/src/main.ts':
    "import { client } from '../../../libs/engine/src/index.js';\n" +
    "import { helper } from './helper.js';\nexport const main = client + helper;\n",
  'apps/worker/src/healthcheck.ts':
    "import { helper } from './helper.js';\nexport const ok = helper;\n",
  'apps/gateway/src/main.ts': "import { a } from './a.controller.js';\nexport const gateway = a;\n",
  'apps/gateway/src/a.service.ts': 'export const service = 1;\n',
  'apps/gateway/src/a.controller.ts':
    "import { service } from './a.service.js';\nexport const a = service;\n",
  'test/run.test.ts':
    "import { run } from '../libs/engine/src/ort/run.js';\nexport const tested = run;\n",
};

const made: string[] = [];
afterAll(async () => {
  await Promise.all(made.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function project(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dijiang-boundaries-'));
  made.push(dir);
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  return dir;
}

/** Runs the checker in `cwd`: its exit code and the violations it listed. */
async function check(cwd: string): Promise<{ code: number; violations: string[] }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [checker], { cwd }, (error, _stdout, stderr) => {
      const violations = stderr
        .split('\n')
        .filter((line) => line.startsWith('  '))
        .map((line) => line.trim());
      resolve({ code: error === null ? 0 : Number(error.code), violations });
    });
  });
}

describe('import boundaries', () => {
  it('pass a project that keeps them', async () => {
    expect(await check(await project(cleanProject))).toEqual({ code: 0, violations: [] });
  });

  it.each([
    {
      rule: 'onnxruntime-node outside the owner (type-only imports too)',
      files: { 'test/ort.test.ts': "import type { Tensor } from 'onnxruntime-node';\n" },
      violations: ['test/ort.test.ts imports onnxruntime-node: only libs/engine/src/ort/ may'],
    },
    {
      rule: "the worker's main thread reaching the addon",
      files: {
        'apps/worker/src/main.ts': "import '../../../libs/engine/src/engine-thread.js';\n",
      },
      violations: [
        'apps/worker/src/main.ts reaches onnxruntime-node: apps/worker/src/main.ts -> ' +
          'libs/engine/src/engine-thread.ts -> libs/engine/src/ort/run.ts -> onnxruntime-node',
      ],
    },
    {
      rule: "the engine's client entry reaching the addon",
      files: { 'libs/engine/src/index.ts': "export * from './ort/run.js';\n" },
      violations: [
        // The worker's main thread imports the client entry, so it reaches the addon too.
        'apps/worker/src/main.ts reaches onnxruntime-node: apps/worker/src/main.ts -> ' +
          'libs/engine/src/index.ts -> libs/engine/src/ort/run.ts -> onnxruntime-node',
        'libs/engine/src/index.ts reaches onnxruntime-node: libs/engine/src/index.ts -> ' +
          'libs/engine/src/ort/run.ts -> onnxruntime-node',
      ],
    },
    {
      rule: 'a file of the pure model library reaching the addon',
      files: { 'libs/model/src/runtime.ts': "export * from '../../engine/src/ort/run.js';\n" },
      violations: [
        'libs/model/src/runtime.ts reaches onnxruntime-node: libs/model/src/runtime.ts -> ' +
          'libs/engine/src/ort/run.ts -> onnxruntime-node',
      ],
    },
    {
      rule: 'an app importing another app',
      files: { 'apps/cli/src/main.ts': "import '../../worker/src/helper.js';\n" },
      violations: [
        'apps/cli/src/main.ts imports apps/worker/src/helper.ts: an app may not import another app',
      ],
    },
    {
      rule: 'a controller importing a controller',
      files: { 'apps/gateway/src/b.controller.ts': "import './a.controller.js';\n" },
      violations: [
        'apps/gateway/src/b.controller.ts imports apps/gateway/src/a.controller.ts: ' +
          'a controller may not import a controller',
      ],
    },
  ])('fail on $rule, naming the offender', async ({ files, violations }) => {
    const result = await check(await project({ ...cleanProject, ...files }));
    expect(result).toEqual({ code: 1, violations });
  });

  it('pass on this repository', async () => {
    expect(await check(repoRoot)).toEqual({ code: 0, violations: [] });
  });
});
