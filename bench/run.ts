/**
 * Runs the benchmark scripts in turn (`npm run bench`, or `npm run bench -- engine gateway` for
 * some of them), each in its own process so that one script's memory does not skew the next;
 * stops at the first failure.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withEngineMallocTuning } from '#processes';

const SCRIPTS = [
  'model.js',
  'kernels.js',
  'engine.js',
  'weights.js',
  'documents.js',
  'gateway.js',
  'scaling.js',
];
const requested = process.argv.slice(2).map((name) => `${name.replace(/\.(js|ts)$/, '')}.js`);
const unknown = requested.filter((script) => !SCRIPTS.includes(script));
if (unknown.length > 0) {
  throw new Error(`unknown benchmark(s) ${unknown.join(', ')}; choose from ${SCRIPTS.join(', ')}`);
}
const here = dirname(fileURLToPath(import.meta.url));
for (const script of requested.length > 0 ? requested : SCRIPTS) {
  console.log(`== bench/${script.replace(/\.js$/, '.ts')}`);
  // Benchmarks run engines in-process and start workers: both with the allocator settings the
  // launcher and the worker images use.
  const result = spawnSync(process.execPath, [join(here, script)], {
    stdio: 'inherit',
    env: withEngineMallocTuning(process.env),
  });
  if (result.status !== 0) {
    throw new Error(`benchmark ${script} failed with exit status ${String(result.status)}`);
  }
}
