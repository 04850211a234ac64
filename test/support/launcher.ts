import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './wait.js';

/** `bin/dijiang.js`, the command `npm start` and users run. */
export const cli = fileURLToPath(new URL('../../bin/dijiang.js', import.meta.url));

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function childrenOf(pid: number): number[] {
  const result = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' });
  return result.stdout.split('\n').filter(Boolean).map(Number);
}

export interface RunningLauncher {
  readonly process: ChildProcess;
  /** Its stdout and stderr so far. */
  output(): string;
  readonly exited: Promise<number | null>;
  /** Its child processes once the cluster was up. */
  readonly children: readonly number[];
  /**
   * SIGKILLs the launcher and every child still alive and removes its DATA_DIR and MODEL_DIR (the
   * end of a test, whatever happened).
   */
  cleanUp(): void;
}

/**
 * `dijiang up ARGS` on `port` with fresh DATA_DIR and MODEL_DIR and no REDIS_URL (a managed Redis),
 * once it says the cluster is up.
 */
export async function startLauncher(
  args: readonly string[],
  port: number,
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 30_000,
): Promise<RunningLauncher> {
  const dataDir = mkdtempSync(join(tmpdir(), 'dijiang-up-'));
  const modelsRoot = mkdtempSync(join(tmpdir(), 'dijiang-up-models-'));
  const launcher = spawn(process.execPath, [cli, 'up', ...args], {
    env: {
      ...process.env,
      PORT: String(port),
      DATA_DIR: dataDir,
      MODEL_DIR: join(modelsRoot, 'models'),
      REDIS_URL: '',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => launcher.once('exit', resolve));
  let output = '';
  launcher.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  launcher.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let children: number[] = [];
  const cleanUp = (): void => {
    for (const pid of [...children, launcher.pid ?? 0])
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    for (const dir of [dataDir, modelsRoot]) rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(() => output.includes('cluster up:'), {
      timeoutMs,
      message: 'the launcher to report the cluster up',
    });
  } catch (error) {
    children = childrenOf(launcher.pid ?? 0);
    cleanUp();
    throw new Error(`${String(error)}; it wrote:\n${output}`, { cause: error });
  }
  children = childrenOf(launcher.pid ?? 0);
  return { process: launcher, output: () => output, exited, children, cleanUp };
}
