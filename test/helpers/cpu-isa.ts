/**
 * The CANOPY_CPU_ISA values the kernel tests run under on this machine, so that the same test
 * files hold every CPU path to its references on x86-64 and on aarch64 (scripts/test-arm64.mjs
 * runs them under qemu-user). 'auto' leaves the variable unset: the best path the CPU has.
 *   attention (and what runs on it: quantized caches, whole models):
 *     x64: auto (AVX-512 where present), avx2;  arm64: auto (NEON tiles), portable (generic tiles)
 *   float linear:   x64: avx512 (where present), avx2, portable;  arm64: neon, portable
 *   block-quantized linear:
 *     x64: auto (VNNI where present), avx2, portable;
 *     arm64: neon-dotprod (where the CPU has dotprod), neon, portable
 */
import { native } from '../../lib/native/loader.js';

const arm64 = process.arch === 'arm64';

export const ATTENTION_ISAS: readonly string[] = arm64 ? ['auto', 'portable'] : ['auto', 'avx2'];

export const QUANT_ISAS: readonly string[] = arm64
  ? [...(native().cpuInfo().features.includes('dotprod') ? ['neon-dotprod'] : []), 'neon', 'portable']
  : ['auto', 'avx2', 'portable'];

/** Selects `isa` for the kernels called next ('auto': unset). */
export function useCpuIsa(isa: string): void {
  if (isa === 'auto') delete process.env.CANOPY_CPU_ISA;
  else process.env.CANOPY_CPU_ISA = isa;
}
