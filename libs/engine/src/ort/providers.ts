import type { Precision } from '#model';
import type { Device } from '../devices.js';

/**
 * What each device means to onnxruntime: the execution provider and the graph precision. CPU runs
 * the fp32 graph; CUDA runs the fp16 graph (built with `model create --fp16`) with onnxruntime's
 * CUDA execution provider, which needs onnxruntime-node's CUDA libraries (installed with
 * ONNXRUNTIME_NODE_INSTALL=cuda12) and an NVIDIA driver.
 */
export const DEVICE_PROVIDERS = {
  cpu: { executionProvider: 'cpu', precision: 'fp32' },
  cuda: { executionProvider: 'cuda', precision: 'fp16' },
} as const satisfies Record<Device, { executionProvider: string; precision: Precision }>;

export type DeviceProvider = (typeof DEVICE_PROVIDERS)[Device];

function isDevice(name: string): name is Device {
  return Object.hasOwn(DEVICE_PROVIDERS, name);
}

/** The device's provider and precision; throws naming the valid devices for any other name. */
export function resolveDevice(name: string): DeviceProvider {
  if (!isDevice(name)) {
    throw new Error(
      `unsupported device '${name}': valid devices are ${Object.keys(DEVICE_PROVIDERS).join(', ')}`,
    );
  }
  return DEVICE_PROVIDERS[name];
}
