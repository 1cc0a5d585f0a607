/**
 * GGUF (ggml) block-quantized weight types canopy computes with natively (the layouts and their
 * math: csrc/common/quant_blocks.h). A matrix [out, in] of such a type is stored as out rows of
 * in / block blocks of `bytes` bytes; in canopy it is a uint8 tensor of those bytes, kept as
 * stored (memory-mapped), together with its type name.
 */

/**
 * ggml type id, values per block, bytes per block, values per sub-block scale, whether values
 * subtract a min, and the byte offsets of the block's f16 scale fields (d, and m / dmin).
 */
export interface QuantTypeInfo {
  id: number;
  block: number;
  bytes: number;
  sub: number;
  hasMin: boolean;
  f16At: readonly number[];
}

export const QUANT_TYPES = {
  Q8_0: { id: 8, block: 32, bytes: 34, sub: 32, hasMin: false, f16At: [0] },
  Q4_0: { id: 2, block: 32, bytes: 18, sub: 32, hasMin: false, f16At: [0] },
  Q4_1: { id: 3, block: 32, bytes: 20, sub: 32, hasMin: true, f16At: [0, 2] },
  Q5_0: { id: 6, block: 32, bytes: 22, sub: 32, hasMin: false, f16At: [0] },
  Q5_1: { id: 7, block: 32, bytes: 24, sub: 32, hasMin: true, f16At: [0, 2] },
  IQ4_NL: { id: 20, block: 32, bytes: 18, sub: 32, hasMin: false, f16At: [0] },
  Q2_K: { id: 10, block: 256, bytes: 84, sub: 16, hasMin: true, f16At: [80, 82] },
  Q3_K: { id: 11, block: 256, bytes: 110, sub: 16, hasMin: false, f16At: [108] },
  Q4_K: { id: 12, block: 256, bytes: 144, sub: 32, hasMin: true, f16At: [0, 2] },
  Q5_K: { id: 13, block: 256, bytes: 176, sub: 32, hasMin: true, f16At: [0, 2] },
  Q6_K: { id: 14, block: 256, bytes: 210, sub: 16, hasMin: false, f16At: [208] },
  IQ4_XS: { id: 23, block: 256, bytes: 136, sub: 32, hasMin: false, f16At: [0] },
} as const satisfies Record<string, QuantTypeInfo>;

export type QuantType = keyof typeof QUANT_TYPES;
export const QUANT_TYPE_NAMES = Object.keys(QUANT_TYPES) as QuantType[];

/** Block types with CUDA linear kernels (csrc/common/linear.h CudaHasQuantKernel); the others run on the CPU only for now. */
export const CUDA_QUANT_TYPES: readonly QuantType[] = ['Q8_0', 'Q4_0', 'Q4_K', 'Q6_K'];

export function isQuantType(value: unknown): value is QuantType {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(QUANT_TYPES, value);
}

/** Bytes of one row of `inFeatures` values (a multiple of the block size). */
export function quantRowBytes(type: QuantType, inFeatures: number): number {
  const t = QUANT_TYPES[type];
  return (inFeatures / t.block) * t.bytes;
}

/** The canopy name of a ggml type id, or undefined when canopy does not compute with it. */
export function quantTypeOfGgmlId(id: number): QuantType | undefined {
  return QUANT_TYPE_NAMES.find((n) => QUANT_TYPES[n].id === id);
}
