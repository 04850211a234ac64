/**
 * Opening onnxruntime sessions on model graphs. The device decides the execution provider
 * (providers.ts); an unsupported one fails here, loudly, before any graph is read.
 */
import ort from 'onnxruntime-node';
import type { LoadedBundle, Precision } from '#model';
import type { Device } from '../devices.js';
import { resolveDevice } from './providers.js';

export type InferenceSession = ort.InferenceSession;

export interface SessionOptions {
  /** @defaultValue 'cpu' */
  device?: Device;
  /** @defaultValue onnxruntime's choice (one thread per physical core) */
  intraOpNumThreads?: number;
  /**
   * Let idle intra-op threads spin waiting for work. Off by default: spinning threads keep every
   * core busy between runs, which starves the process's other threads (the event loop, streaming)
   * and any other process on small machines, and measured no faster here.
   * @defaultValue false
   */
  allowSpinning?: boolean;
  /**
   * Record onnxruntime's profile of every run, written to a JSON file whose name starts with this
   * path when `endProfiling()` is called (the step-profile benchmark). @defaultValue off
   */
  profileFilePrefix?: string;
}

export async function openSession(
  modelPath: string,
  options: SessionOptions = {},
): Promise<InferenceSession> {
  const { executionProvider } = resolveDevice(options.device ?? 'cpu');
  return ort.InferenceSession.create(modelPath, {
    executionProviders: [executionProvider],
    graphOptimizationLevel: 'all',
    extra: { session: { 'intra_op.allow_spinning': options.allowSpinning === true ? '1' : '0' } },
    ...(options.intraOpNumThreads === undefined
      ? {}
      : { intraOpNumThreads: options.intraOpNumThreads }),
    ...(options.profileFilePrefix === undefined
      ? {}
      : { enableProfiling: true, profileFilePrefix: options.profileFilePrefix }),
  });
}

/**
 * Opens the bundle's graph for the device: fp32 on CPU, fp16 on CUDA, unless `precision` asks
 * for another (a bundle without that graph fails naming it).
 */
export async function openBundleSession(
  bundle: LoadedBundle,
  options: SessionOptions & { precision?: Precision } = {},
): Promise<InferenceSession> {
  const { precision, ...sessionOptions } = options;
  const device = resolveDevice(sessionOptions.device ?? 'cpu');
  return openSession(bundle.graphPath(precision ?? device.precision), sessionOptions);
}

/** The onnxruntime version this process runs, for benchmark reports. */
export function onnxruntimeVersion(): string {
  return ort.env.versions.common;
}
