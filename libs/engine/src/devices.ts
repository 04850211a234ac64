/**
 * Devices an engine can be asked to run on. The names live here, apart from the execution
 * providers they map to (ort/providers.ts), so that configuration and the engine's client side
 * can name a device without loading onnxruntime.
 */
export const DEVICE_NAMES = ['cpu', 'cuda'] as const;

export type Device = (typeof DEVICE_NAMES)[number];
