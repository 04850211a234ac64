/**
 * The engine thread (DESIGN.md decision 1): onnxruntime's `session.run()` is long native work, so
 * it runs here, never on the thread that serves BullMQ locks, Redis and HTTP. The loop ticks the
 * scheduler while there is work and sleeps on the message port otherwise.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { loadBundle, loadTokenizer } from '#model';
import { ENGINE_DEFAULTS } from './defaults.js';
import { openBundleSession, resolveDevice, runChunk } from './ort/index.js';
import type { EngineCommand, EngineMessage, EngineThreadOptions } from './protocol.js';
import { Scheduler } from './scheduler.js';

function requireParentPort(): MessagePort {
  if (parentPort === null) throw new Error('engine-thread.js must run in a worker thread');
  return parentPort;
}
const port = requireParentPort();
const post = (message: EngineMessage, transfer: ArrayBuffer[] = []): void => {
  port.postMessage(message, transfer);
};

async function main(options: EngineThreadOptions): Promise<void> {
  // The device is checked before the bundle is read: a wrong setting fails at once, by name.
  const { precision } = resolveDevice(options.device);
  const bundle = await loadBundle(options.bundleDir);
  const config = bundle.manifest.config;
  const tokenizer = await loadTokenizer(bundle.manifest.tokenizer, bundle.dir);
  const session = await openBundleSession(bundle, {
    device: options.device,
    precision,
    ...(options.intraOpThreads === undefined ? {} : { intraOpNumThreads: options.intraOpThreads }),
  });
  const scheduler = new Scheduler(
    config,
    tokenizer,
    (request) => runChunk(session, config, request),
    {
      maxBatch: options.maxBatch,
      maxPrefillChunk: options.maxPrefillChunk,
      minPrefillChunk: ENGINE_DEFAULTS.minPrefillChunk,
    },
  );

  const control = { running: true };
  let wake: (() => void) | undefined;
  port.on('message', (command: EngineCommand) => {
    switch (command.type) {
      case 'submit':
        scheduler.submit(command.request);
        break;
      case 'start':
        scheduler.start(command.id, command.start);
        break;
      case 'cancel':
        scheduler.cancel(command.id);
        break;
      case 'suspend':
        scheduler.suspend(command.id);
        break;
      case 'shutdown':
        control.running = false;
        break;
    }
    flush();
    wake?.();
  });

  function flush(): void {
    const events = scheduler.drainEvents();
    if (events.length === 0) return;
    const transfer: ArrayBuffer[] = [];
    for (const event of events) {
      if (event.type === 'checkpoint' || event.type === 'prefix-state') transfer.push(event.state);
      else if (event.type === 'finished' && event.state !== undefined) transfer.push(event.state);
    }
    post({ type: 'events', events, stats: { ...scheduler.stats } }, transfer);
  }

  post({
    type: 'ready',
    modelId: bundle.manifest.id,
    stateBytes: scheduler.stateFloats * 4,
    vocabSize: config.vocabSize,
    chat: bundle.manifest.chat,
  });
  while (control.running) {
    if (scheduler.hasWork) {
      await scheduler.tick();
      flush();
      // Let queued commands (new sequences, cancellations) in between ticks.
      await new Promise((resolve) => setImmediate(resolve));
    } else {
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      wake = undefined;
    }
  }
  await session.release();
  port.close();
}

main(workerData as EngineThreadOptions).catch((error: unknown) => {
  post(
    error instanceof Error
      ? { type: 'fatal', message: error.message, stack: error.stack }
      : { type: 'fatal', message: String(error), stack: undefined },
  );
  port.close();
});
