import pinoPretty from 'pino-pretty';
import { pino, type Logger } from 'pino';
import type { LogFormat } from '#config';

export type { Logger } from 'pino';

/**
 * Human log lines: `[12:04:05.123] INFO: gateway | message {"key":"field",…}`. The pid and
 * hostname stay in the JSON form only; a terminal reader knows which machine they are on.
 */
const PRETTY_OPTIONS = {
  translateTime: 'SYS:HH:MM:ss.l',
  ignore: 'pid,hostname,service,workerId',
  messageFormat: '{service}{if workerId} {workerId}{end} | {msg}',
  singleLine: true,
} as const;

/** `auto` means pretty exactly when the stream is a terminal. */
export function isPrettyLogFormat(format: LogFormat, stream: { isTTY?: boolean }): boolean {
  return format === 'pretty' || (format === 'auto' && stream.isTTY === true);
}

/**
 * Logs tagged with the emitting service: one JSON object per line, or human lines when `format`
 * says so (see {@link isPrettyLogFormat}), written synchronously either way so that the last
 * lines before a crash are not lost.
 */
export function createLogger(service: string, level: string, format: LogFormat = 'json'): Logger {
  const options = { level, base: { service, pid: process.pid } };
  if (!isPrettyLogFormat(format, process.stdout)) return pino(options);
  return pino(
    options,
    pinoPretty({ ...PRETTY_OPTIONS, colorize: process.stdout.isTTY, sync: true }),
  );
}

/**
 * Turns the JSON log lines of child processes into human lines (what `dijiang up` shows on a
 * terminal); any other line passes through unchanged.
 */
export function prettyLogLines(colorize: boolean): (line: string) => string {
  const pretty = pinoPretty.prettyFactory({ ...PRETTY_OPTIONS, colorize });
  return (line) => {
    if (!line.startsWith('{')) return line;
    try {
      return pretty(JSON.parse(line)).trimEnd();
    } catch {
      return line;
    }
  };
}
