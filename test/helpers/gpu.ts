/**
 * Gating for CUDA suites: they run where a usable GPU is present and are
 * skipped, with the reason printed, where none is. With CANOPY_REQUIRE_GPU=1
 * (set by `npm run test:gpu`) a missing GPU fails instead.
 */

import { cudaInfo } from '../../lib/native/backend.js';

export interface GpuGate {
  available: boolean;
  reason: string;
}

export function gpuGate(suite: string): GpuGate {
  const info = cudaInfo();
  const available = info.available;
  const reason = info.reason ?? '';
  if (!available) {
    if (process.env.CANOPY_REQUIRE_GPU === '1') {
      throw new Error(`${suite}: CANOPY_REQUIRE_GPU=1 but no usable GPU: ${reason}`);
    }
    console.warn(`[skip] ${suite}: no usable GPU (${reason})`);
  }
  return { available, reason };
}
