import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { BundleChat } from '#model';
import { ENGINE_DEFAULTS } from './defaults.js';
import { emptyEngineStats, type EngineStats } from './engine-stats.js';
import type { Device } from './devices.js';
import type {
  EngineCommand,
  EngineMessage,
  EngineThreadOptions,
  FinishedEvent,
  SequenceEvent,
  SequenceRequest,
  SequenceStart,
  Tokenized,
} from './protocol.js';

/** Engine settings; what is left out comes from `ENGINE_DEFAULTS` (defaults.ts). */
export interface EngineOptions {
  bundleDir: string;
  device?: Device;
  /** onnxruntime intra-op threads. @defaultValue onnxruntime's choice */
  intraOpThreads?: number;
  maxBatch?: number;
  maxPrefillChunk?: number;
}

export interface SequenceHandlers {
  /** Decides where the sequence starts once its token count is known (resume, cache, state). */
  start(tokenized: Tokenized): Promise<SequenceStart> | SequenceStart;
  /** Every event of the sequence, in order; the next is not delivered before this settles. */
  onEvent?(event: SequenceEvent): Promise<void> | void;
}

export type SequenceOutcome = FinishedEvent | { type: 'suspended'; id: string };

interface Pending {
  handlers: SequenceHandlers;
  /** Serialises the handlers of this sequence's events. */
  chain: Promise<void>;
  resolve(outcome: SequenceOutcome): void;
  reject(error: Error): void;
}

/**
 * The engine's face on the calling thread: starts the engine thread on a model bundle, submits
 * sequences and delivers their events. Nothing here blocks on inference.
 */
export class Engine {
  private readonly pending = new Map<string, Pending>();
  private fatal: Error | undefined;
  private readonly exited: Promise<void>;
  private readonly fatalListeners: ((error: Error) => void)[] = [];
  private closing = false;
  private latestStats: EngineStats = emptyEngineStats();

  private constructor(
    private readonly thread: Worker,
    readonly modelId: string,
    readonly stateBytes: number,
    /** The bundle's chat template, when it has one. */
    readonly chat: BundleChat | undefined,
  ) {
    thread.on('message', (message: EngineMessage) => {
      this.onMessage(message);
    });
    thread.on('error', (error) => {
      this.failAll(error);
    });
    this.exited = new Promise((resolve) => {
      thread.once('exit', () => {
        this.failAll(new Error('the engine thread exited'));
        resolve();
      });
    });
  }

  /** Called once if the engine thread fails or exits: the engine can run nothing more. */
  onFatal(listener: (error: Error) => void): void {
    this.fatalListeners.push(listener);
  }

  static async start(options: EngineOptions): Promise<Engine> {
    const threadOptions: EngineThreadOptions = {
      bundleDir: options.bundleDir,
      device: options.device ?? ENGINE_DEFAULTS.device,
      intraOpThreads: options.intraOpThreads,
      maxBatch: options.maxBatch ?? ENGINE_DEFAULTS.maxBatch,
      maxPrefillChunk: options.maxPrefillChunk ?? ENGINE_DEFAULTS.maxPrefillChunk,
    };
    const thread = new Worker(engineThreadEntry(), {
      workerData: threadOptions,
      // The thread always runs compiled JavaScript: drop a `source` resolution condition that a
      // TypeScript-running parent (the test runner) may carry, or '#model' would resolve to .ts.
      execArgv: withoutConditions(process.execArgv),
    });
    let onMessage: ((message: EngineMessage) => void) | undefined;
    let onError: ((error: Error) => void) | undefined;
    let onExit: ((code: number) => void) | undefined;
    try {
      const ready = await new Promise<Extract<EngineMessage, { type: 'ready' }>>(
        (resolve, reject) => {
          onMessage = (message: EngineMessage): void => {
            if (message.type === 'ready') resolve(message);
            else if (message.type === 'fatal') reject(threadError(message));
          };
          onError = reject;
          onExit = (code: number): void => {
            reject(new Error(`the engine thread exited with code ${code} before it was ready`));
          };
          thread.on('message', onMessage).on('error', onError).on('exit', onExit);
        },
      );
      return new Engine(thread, ready.modelId, ready.stateBytes, ready.chat);
    } finally {
      // Only our own listeners: Worker keeps internal ones that removeAllListeners() would drop.
      if (onMessage) thread.off('message', onMessage);
      if (onError) thread.off('error', onError);
      if (onExit) thread.off('exit', onExit);
    }
  }

  /** Runs a sequence to its end; resolves with its finished (or suspended) event. */
  async run(request: SequenceRequest, handlers: SequenceHandlers): Promise<SequenceOutcome> {
    if (this.fatal !== undefined) throw this.fatal;
    if (this.pending.has(request.id)) throw new Error(`sequence ${request.id} is already running`);
    return new Promise<SequenceOutcome>((resolve, reject) => {
      this.pending.set(request.id, { handlers, chain: Promise.resolve(), resolve, reject });
      this.send({ type: 'submit', request });
    });
  }

  cancel(id: string): void {
    if (this.pending.has(id)) this.send({ type: 'cancel', id });
  }

  /** Checkpoints the sequence and stops it; `run` resolves with a `suspended` outcome. */
  suspend(id: string): void {
    if (this.pending.has(id)) this.send({ type: 'suspend', id });
  }

  get activeSequences(): number {
    return this.pending.size;
  }

  /** What the engine has done so far (running totals, as of its latest tick with events). */
  get stats(): Readonly<EngineStats> {
    return this.latestStats;
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.fatal === undefined) this.send({ type: 'shutdown' });
    const timer = setTimeout(() => {
      void this.thread.terminate();
    }, 5000);
    await this.exited;
    clearTimeout(timer);
  }

  private send(command: EngineCommand): void {
    this.thread.postMessage(command);
  }

  private onMessage(message: EngineMessage): void {
    switch (message.type) {
      case 'events':
        this.latestStats = message.stats;
        for (const event of message.events) this.dispatch(event);
        break;
      case 'fatal':
        this.failAll(threadError(message));
        break;
      case 'ready':
        break;
    }
  }

  private dispatch(event: SequenceEvent): void {
    const pending = this.pending.get(event.id);
    if (pending === undefined) return;
    const terminal =
      event.type === 'finished' || event.type === 'failed' || event.type === 'suspended';
    if (terminal) this.pending.delete(event.id);
    pending.chain = pending.chain
      .then(async () => {
        if (event.type === 'tokenized') {
          const start = await pending.handlers.start(event);
          this.send({ type: 'start', id: event.id, start });
        }
        await pending.handlers.onEvent?.(event);
        if (event.type === 'finished' || event.type === 'suspended') pending.resolve(event);
        else if (event.type === 'failed') pending.reject(new Error(event.message));
      })
      .catch((error: unknown) => {
        // A handler failed (e.g. Redis is down): stop the sequence and fail its run.
        this.pending.delete(event.id);
        this.send({ type: 'cancel', id: event.id });
        pending.reject(error instanceof Error ? error : new Error(String(error)));
      });
  }

  private failAll(error: Error): void {
    if (this.fatal === undefined) {
      this.fatal = error;
      if (!this.closing) for (const listener of this.fatalListeners) listener(error);
    }
    for (const [id, pending] of this.pending) {
      this.pending.delete(id);
      pending.reject(error);
    }
  }
}

/**
 * The engine thread's error, raised on this thread: the message unchanged, and a stack that shows
 * where it happened in the engine thread, followed by where this thread received it.
 */
function threadError(report: Extract<EngineMessage, { type: 'fatal' }>): Error {
  const error = new Error(report.message);
  if (report.stack !== undefined) {
    const received = (error.stack ?? '').split('\n').slice(1).join('\n');
    error.stack = `${report.stack}\n    --- reported by the engine thread to ---\n${received}`;
  }
  return error;
}

/**
 * The compiled engine-thread script. Worker threads run JavaScript only: when this module runs
 * from TypeScript sources (the test runner), the thread still runs from dist/ (`npm test` builds
 * first).
 */
function engineThreadEntry(): URL {
  const beside = new URL('./engine-thread.js', import.meta.url);
  if (!import.meta.url.endsWith('.ts')) return beside;
  const built = new URL(
    import.meta.url.replace(
      /\/libs\/engine\/src\/engine\.ts$/,
      '/dist/libs/engine/src/engine-thread.js',
    ),
  );
  if (!existsSync(fileURLToPath(built))) {
    throw new Error(`${fileURLToPath(built)} is missing: run \`npm run build\` first`);
  }
  return built;
}

/** `execArgv` without `--conditions X`, `--conditions=X` and `-C X`. */
function withoutConditions(execArgv: readonly string[]): string[] {
  const kept: string[] = [];
  for (let index = 0; index < execArgv.length; index += 1) {
    const arg = execArgv[index] ?? '';
    if (arg === '--conditions' || arg === '-C') index += 1;
    else if (!arg.startsWith('--conditions=')) kept.push(arg);
  }
  return kept;
}
