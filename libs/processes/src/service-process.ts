import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/**
 * Child processes of the local cluster (`dijiang up`) and of the test harness: spawned, watched
 * until they say they are ready, and stopped with a grace period.
 */

/** Log messages (`msg` of the JSON line) by which apps announce they are ready. */
export const ReadyMessage = {
  Gateway: 'gateway listening',
  Worker: 'worker registered',
} as const;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServiceProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Settles when the process has exited, however it ended. */
  readonly exited: Promise<Exit>;
  /** The line that made the service ready (parsed JSON for JSON logs). */
  readonly readyLine: string;
  /** Sends `signal`; after `graceMs` without exit, SIGKILL. Resolves once the process is gone. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<Exit>;
}

export interface SpawnServiceOptions {
  env: NodeJS.ProcessEnv;
  /** True for the stdout line that means "ready". */
  isReady(line: string): boolean;
  /** Every stdout/stderr line, e.g. to forward it to the terminal. */
  onLine?(line: string, stream: 'stdout' | 'stderr'): void;
  /** Open an IPC channel so that a Node child notices when its launcher dies. */
  ipc?: boolean;
  /** Run in a process group of its own, out of reach of the terminal's Ctrl-C. */
  detached?: boolean;
  /** @defaultValue 30000 ms */
  readyTimeoutMs?: number;
  cwd?: string;
}

export async function spawnService(
  name: string,
  command: string,
  args: readonly string[],
  options: SpawnServiceOptions,
): Promise<ServiceProcess> {
  const child = spawn(command, args, {
    env: options.env,
    cwd: options.cwd,
    detached: options.detached ?? false,
    stdio: options.ipc === true ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
    });
  });
  const recent: string[] = [];
  const remember = (line: string): void => {
    recent.push(line);
    if (recent.length > 40) recent.shift();
  };

  const readyLine = await new Promise<string>((resolve, reject) => {
    const timeoutMs = options.readyTimeoutMs ?? 30_000;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} was not ready within ${timeoutMs} ms:\n${recent.join('\n')}`));
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`${name} could not start (${command}): ${error.message}`));
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(
        new Error(
          `${name} exited before it was ready (code ${String(code)}, signal ${String(signal)}):\n` +
            recent.join('\n'),
        ),
      );
    });
    if (child.stdout === null || child.stderr === null) throw new Error('stdio is piped');
    createInterface({ input: child.stdout }).on('line', (line) => {
      remember(line);
      options.onLine?.(line, 'stdout');
      if (options.isReady(line)) {
        clearTimeout(timer);
        resolve(line);
      }
    });
    createInterface({ input: child.stderr }).on('line', (line) => {
      remember(line);
      options.onLine?.(line, 'stderr');
    });
  });

  const pid = child.pid;
  if (pid === undefined) throw new Error(`${name} has no pid`);
  return {
    name,
    child,
    pid,
    exited,
    readyLine,
    async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<Exit> {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const exit = await exited;
      clearTimeout(timer);
      return exit;
    },
  };
}

/** Matches a pino JSON line whose `msg` is `message`. */
export function isLogMessage(line: string, message: string): boolean {
  if (!line.startsWith('{')) return false;
  try {
    return (JSON.parse(line) as { msg?: unknown }).msg === message;
  } catch {
    return false;
  }
}
