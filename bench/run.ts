/**
 * Runs the benchmark scripts in turn (`npm run bench`, or `npm run bench -- engine gateway` for
 * some of them), each in its own process so that one script's memory does not skew the next;
 * stops at the first failure. Options (`--name value`) are the peers benchmark's, e.g. `npm run
 * bench -- peers --contexts 1024,2048` (bench/peers-settings.ts); the others read the environment.
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
  'step-profile.js',
  'documents.js',
  'gateway.js',
  'scaling.js',
  'peers.js',
];
const names: string[] = [];
const options: string[] = [];
const argv = process.argv.slice(2);
for (let index = 0; index < argv.length; index += 1) {
  const arg = argv[index] ?? '';
  if (arg.startsWith('--')) {
    options.push(arg, argv[index + 1] ?? '');
    index += 1;
  } else {
    names.push(arg);
  }
}
const requested = names.map((name) => `${name.replace(/\.(js|ts)$/, '')}.js`);
const unknown = requested.filter((script) => !SCRIPTS.includes(script));
const OPTION_TAKER = 'peers.js';
if (options.length > 0 && !requested.includes(OPTION_TAKER)) {
  throw new Error(
    `options (${options.join(' ')}) are the peers benchmark's: npm run bench -- peers ${options.join(' ')}`,
  );
}
if (unknown.length > 0) {
  throw new Error(`unknown benchmark(s) ${unknown.join(', ')}; choose from ${SCRIPTS.join(', ')}`);
}
const here = dirname(fileURLToPath(import.meta.url));
for (const script of requested.length > 0 ? requested : SCRIPTS) {
  console.log(`== bench/${script.replace(/\.js$/, '.ts')}`);
  // Benchmarks run engines in-process and start workers: both with the allocator settings the
  // launcher and the worker images use.
  const result = spawnSync(
    process.execPath,
    [join(here, script), ...(script === OPTION_TAKER ? options : [])],
    {
      stdio: 'inherit',
      env: withEngineMallocTuning(process.env),
    },
  );
  if (result.status !== 0) {
    throw new Error(`benchmark ${script} failed with exit status ${String(result.status)}`);
  }
}
