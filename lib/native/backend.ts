/**
 * Backend selection: where work is placed.
 *
 *   'cpu'    always the CPU.
 *   'cuda'   the first usable CUDA device, or a CudaUnavailableError saying why
 *            (not compiled in, no driver, no device, compute capability too old).
 *   'cuda:N' that device, with the same checks.
 *   'auto'   CUDA when usable, else the CPU; the reason for falling back is
 *            recorded in the returned placement.
 */

import { ArgumentError, CudaUnavailableError, classifyCudaReason } from '../errors.js';
import { native } from './loader.js';
import type { NativeCudaInfo } from './types.js';

export type Backend = 'auto' | 'cpu' | 'cuda';
export type Device = 'cpu' | `cuda:${number}`;

export interface Placement {
  backend: 'cpu' | 'cuda';
  device: Device;
  /** Why 'auto' chose the CPU (absent when CUDA was chosen or the CPU was asked for). */
  fallbackReason?: string;
}

let cudaInfoCache: NativeCudaInfo | undefined;

/** CUDA runtime facts (queried once per process). */
export function cudaInfo(): NativeCudaInfo {
  cudaInfoCache ??= native().cudaInfo();
  return cudaInfoCache;
}

const DEVICE_RE = /^cuda:(\d+)$/;

export function isBackendOrDevice(value: unknown): value is Backend | Device {
  return value === 'auto' || value === 'cpu' || value === 'cuda' || (typeof value === 'string' && DEVICE_RE.test(value));
}

function cudaUnavailable(info: NativeCudaInfo): CudaUnavailableError {
  const reason = info.reason ?? 'unknown reason';
  return new CudaUnavailableError(classifyCudaReason(reason), `CUDA was requested but is not usable: ${reason}`);
}

/** Resolves a backend or device name to a concrete placement. `argument` names the option in errors. */
export function selectBackend(requested: Backend | Device = 'auto', argument = 'backend'): Placement {
  if (!isBackendOrDevice(requested)) {
    throw new ArgumentError(argument, "one of 'auto', 'cpu', 'cuda' or 'cuda:N'", requested);
  }
  if (requested === 'cpu') return { backend: 'cpu', device: 'cpu' };
  const info = cudaInfo();
  if (requested === 'auto') {
    const first = info.devices.find((d) => d.usable);
    if (info.available && first) return { backend: 'cuda', device: `cuda:${first.index}` };
    return { backend: 'cpu', device: 'cpu', fallbackReason: info.reason ?? 'no usable CUDA device' };
  }
  if (!info.available) throw cudaUnavailable(info);
  if (requested === 'cuda') {
    const first = info.devices.find((d) => d.usable)!;
    return { backend: 'cuda', device: `cuda:${first.index}` };
  }
  const index = Number(DEVICE_RE.exec(requested)![1]);
  const dev = info.devices[index];
  if (!dev) {
    throw new CudaUnavailableError('no-device', `${argument}: ${requested} does not exist; ${info.devices.length} CUDA device(s) found`);
  }
  if (!dev.usable) {
    throw new CudaUnavailableError('compute-capability', `${argument}: ${requested} (${dev.name}) is not usable: ${dev.reason}`);
  }
  return { backend: 'cuda', device: requested };
}

/** The CUDA ordinal of a device name ('cuda:1' -> 1), or -1 for the CPU. */
export function deviceIndex(device: Device): number {
  const m = DEVICE_RE.exec(device);
  return m ? Number(m[1]) : -1;
}
