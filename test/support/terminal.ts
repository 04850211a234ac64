import { spawn, type ChildProcess } from 'node:child_process';

/** A command running on a pseudo-terminal: what it prints, and a way to type into it. */
export interface TerminalRun {
  readonly child: ChildProcess;
  /** Everything printed so far, ANSI colour codes and carriage returns included. */
  output(): string;
  /** Keystrokes sent to the terminal, e.g. "\u0003" for Ctrl-C. */
  type(keys: string): void;
  /** The command's exit code (`script -e` passes it through). */
  readonly exited: Promise<number | null>;
}

/**
 * Runs `command` (a shell command line) with stdin, stdout and stderr on a pseudo-terminal made
 * by util-linux `script`, so that `isTTY` is true in the program, as in a person's terminal.
 */
export function runInTerminal(
  command: string,
  options: { env?: NodeJS.ProcessEnv; cwd?: string; columns?: number } = {},
): TerminalRun {
  // `script` reads keys from a pipe here, so the terminal has no size until `stty` gives it one;
  // `exec` makes the command the terminal's foreground process, the one Ctrl-C reaches.
  const line = `stty cols ${options.columns ?? 120} rows 40 && exec ${command}`;
  const child = spawn(
    'script',
    ['--quiet', '--flush', '--return', '--command', line, '/dev/null'],
    {
      cwd: options.cwd,
      env: { ...(options.env ?? process.env), TERM: 'xterm' },
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let printed = '';
  child.stdout.on('data', (chunk: Buffer) => (printed += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (printed += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  return {
    child,
    output: () => printed,
    type: (keys) => child.stdin.write(keys),
    exited,
  };
}

/** Text as a person sees it: colour and cursor codes removed, carriage returns turned into line ends. */
export function plainText(output: string): string {
  // eslint-disable-next-line no-control-regex
  return output.replace(/\u001b\[[0-9;?]*[A-Za-z]|\u001b[78]/g, '').replace(/\r\n?/g, '\n');
}
