/**
 * glibc malloc settings for processes that run the engine. onnxruntime-node hands every output
 * back in fresh memory: at B=32 with pythia-70m, 24 MiB of states and 6 MiB of logits per decode
 * step. With glibc's defaults such blocks are mapped and unmapped step after step and faulted in
 * again page by page, which measured close to twice the decode step. Keeping blocks up to
 * 32 MiB (glibc's largest mmap threshold) in the heap, and not trimming the heap, avoids that.
 *
 * glibc reads them once, at process start: whoever starts a worker sets them (`dijiang up`, the
 * worker images, `npm run bench`). Values already in the environment win; other C libraries
 * ignore them.
 */
export const ENGINE_MALLOC_ENV: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: String(32 * 1024 * 1024),
  MALLOC_TRIM_THRESHOLD_: String(1024 * 1024 * 1024),
};

/** `env` with {@link ENGINE_MALLOC_ENV} added where `env` does not set the variable itself. */
export function withEngineMallocTuning(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...ENGINE_MALLOC_ENV, ...env };
}

/** The tuning variables missing from this process's environment (on glibc systems). */
export function missingEngineMallocTuning(env: NodeJS.ProcessEnv = process.env): string[] {
  if (process.platform !== 'linux') return [];
  return Object.keys(ENGINE_MALLOC_ENV).filter((name) => env[name] === undefined);
}
