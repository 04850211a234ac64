import type { Precision } from '#model';

/**
 * Devices an engine can run on, and what each implies. CPU runs the fp32 graph; CUDA runs the
 * fp16 graph (built with `model create --fp16`) with onnxruntime's CUDA execution provider, which
 * needs onnxruntime-node's CUDA libraries (installed with ONNXRUNTIME_NODE_INSTALL=cuda12).
 */
export const DEVICES = {
  cpu: { executionProvider: 'cpu', precision: 'fp32' },
  cuda: { executionProvider: 'cuda', precision: 'fp16' },
} as const satisfies Record<string, { executionProvider: string; precision: Precision }>;

export type Device = keyof typeof DEVICES;

export function isDevice(name: string): name is Device {
  return Object.hasOwn(DEVICES, name);
}

export function resolveDevice(name: string): (typeof DEVICES)[Device] {
  if (!isDevice(name)) {
    throw new Error(
      `unsupported device '${name}': valid devices are ${Object.keys(DEVICES).join(', ')}`,
    );
  }
  return DEVICES[name];
}
