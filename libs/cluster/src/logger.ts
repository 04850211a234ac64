import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/** Structured JSON logs, one line per event, tagged with the emitting service. */
export function createLogger(service: string, level: string): Logger {
  return pino({ level, base: { service, pid: process.pid } });
}
