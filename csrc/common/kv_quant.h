// Op family: quantized KV caches (int8, int4 KIVI-style, fp8 e4m3), read directly by attention.
//
// A quantized cache stores, per layer, `rows` token rows for num_kv_heads (H) heads of head_dim
// (D) channels. Sequence b owns a region of rows starting at kv_start[b] (its key j is row
// kv_start[b] + j), exactly like the plain cache. Attention dequantizes on load (into registers
// or an L1-sized block of one tile: keys and values of at most 32 tokens); no dequantized copy of
// the cache is ever written, except by DequantizeKv, which exists for tests and references.
//
// Formats and per-layer layouts (row-major; f32 scales and zero points):
//
//   int8  symmetric, one scale per (token, head):
//           k, v          int8  [rows][H][D]
//           k_scale, v_scale f32 [rows][H]
//         quantize a (token, head) row x[0..D):  a = max_c |x_c|, s = a / 127,
//           q_c = clamp(rint(x_c * (127 / a)), -127, 127)   (a = 0: s = 0, q = 0)
//         dequantize: x_c ~ q_c * s.  Error bound |x_c - q_c s| <= s / 2 (plus f32 rounding).
//
//   fp8   e4m3 (OCP "E4M3FN": bias 7, 3 mantissa bits, max 448, no infinities, NaN = 0x7f),
//         one scale per (token, head):
//           k, v          uint8 [rows][H][D]   e4m3 bit patterns
//           k_scale, v_scale f32 [rows][H]
//         quantize: a = max_c |x_c|, s = a / 448, code_c = e4m3(x_c * (448 / a)) rounded to
//           nearest even, saturating at +-448 (a = 0: s = 0, codes 0)
//         dequantize: x_c ~ f32(code_c) * s.  Error bound: 2^-4 |x_c| (normal codes) or
//           2^-10 s (subnormal codes, |x_c| < 2^-6 s), plus f32 rounding.
//         Attention over fp8 runs on GPUs with compute capability 8.9+ (hardware e4m3
//         conversion; the CUDA launcher refuses older devices) and on the CPU (a software
//         decoder: the reference the CUDA kernel is tested against, not a tuned path).
//
//   int4  asymmetric, in the manner of KIVI (two 4-bit codes per byte, channel 2i in the LOW
//         nibble, 2i+1 in the high nibble):
//           keys, per CHANNEL over groups of G tokens (G in 32, 64, 128; group g holds rows
//           [g G, (g+1) G), so regions must start at multiples of G):
//             k           uint8 [rows][H][D/2]
//             k_scale, k_zero f32 [rows/G][H][D]
//           values, per TOKEN over the D channels of a head:
//             v           uint8 [rows][H][D/2]
//             v_scale, v_zero f32 [rows][H]
//         quantize a set x (G values of one key channel, or D values of one value row):
//           lo = min x, hi = max x, s = (hi - lo) / 15, q = clamp(rint((x - lo) / s), 0, 15)
//           (s = 0: q = 0); zero = lo
//         dequantize: x ~ q * s + zero.  Error bound |x - (q s + zero)| <= s / 2 (plus f32 rounding).
//         The most recent tokens stay in a 16-bit (f16 / bf16, or f32) residual until their key
//         group is complete and older than the newest R tokens (R >= G): each sequence has a
//         ring of `ring` rows at res_start[b] in
//             res_k, res_v  res_dtype [res_rows][H][D]
//         and its key j >= quant_len[b] lives at ring row res_start[b] + (j mod ring). Keys
//         [0, quant_len) are quantized (quant_len a multiple of G). The ring must hold every
//         unquantized key: kv_len - quant_len <= ring.
//         "Quantize completed groups" moves whole groups from the ring to the packed rows:
//           CompletedQuantLen(L, G, R) = max(0, floor((L - R) / G) * G)
//         is the quantized length for L committed keys; uncommitted keys (draft tree nodes)
//         are never quantized.
//
// Bytes per token and layer (K and V together): 16-bit 4 H D; int8 / fp8 2 H (D + 4);
// int4 H (D + 8 D / G + 8) (plus the ring, ring x 4 H D bytes per sequence for a 16-bit residual).
//
// Ops (CPU and CUDA; on CUDA every pointer of the cache is device memory, every index array
// host memory):
//   AppendQuantKv     writes new tokens' f32 keys/values: int8/fp8 quantize each (token, head)
//                     row into row kv_start[b] + pos; int4 writes them to the ring.
//   QuantizeKvGroups  int4: quantizes keys [from[b], to[b]) (whole groups) of each sequence
//                     from the ring into packed rows, every layer.
//   RestoreKvGroups   int4: writes the DEQUANTIZED keys [from[b], to[b]) back into the ring
//                     (truncating into a quantized group: the kept keys become residual keys
//                     holding exactly the values attention saw), every layer.
//   CommitQuantKv     after tree verification: position prefix + j <- prefix + accepted[j], as
//                     in kv_commit.h (moves codes and scales for int8/fp8, ring rows for int4).
//   DequantizeKv      writes f32 keys/values of each sequence [sum kv_len][H][D] (tests and
//                     references only).
// Inputs are expected finite: a NaN or infinite element gives codes 0 and a non-finite scale for
// its row or group (never undefined behaviour), so it poisons that row as it would unquantized.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "dtype.h"
#include "status.h"

namespace canopy {

enum class KvFormat : int32_t { kInt8 = 1, kInt4 = 2, kFp8 = 3 };

inline const char* KvFormatName(KvFormat f) {
  switch (f) {
    case KvFormat::kInt8: return "int8";
    case KvFormat::kInt4: return "int4";
    case KvFormat::kFp8: return "fp8";
  }
  return "unknown";
}

// A quantized cache: `layers` layers stacked (each layer's arrays follow the previous one's).
// Attention takes a single-layer view (QuantKvLayer).
struct QuantKvCache {
  KvFormat format = KvFormat::kInt8;
  int32_t layers = 1;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int64_t rows = 0;   // token rows per layer
  int32_t group = 0;  // int4: G
  void* k = nullptr;
  void* v = nullptr;
  float* k_scale = nullptr;
  float* v_scale = nullptr;
  float* k_zero = nullptr;  // int4
  float* v_zero = nullptr;  // int4
  void* res_k = nullptr;    // int4 residual rings
  void* res_v = nullptr;
  DType res_dtype = DType::kF16;
  int64_t res_rows = 0;  // ring rows per layer
  int32_t ring = 0;      // rows of one sequence's ring
};

// Bytes of one residual element (f32, f16 or bf16; usable in device code, unlike DTypeSize).
CANOPY_HD int64_t ResElemBytes(DType t) { return t == DType::kF32 ? 4 : 2; }

// Bytes of one (token, head) code row.
CANOPY_HD int64_t QuantCodeBytes(KvFormat f, int32_t head_dim) { return f == KvFormat::kInt4 ? head_dim / 2 : head_dim; }

// Element counts of one layer's arrays.
CANOPY_HD int64_t QuantCodeBytesPerLayer(const QuantKvCache& c) {
  return c.rows * c.num_kv_heads * QuantCodeBytes(c.format, c.head_dim);
}
CANOPY_HD int64_t QuantKScaleCount(const QuantKvCache& c) {
  return c.format == KvFormat::kInt4 ? (c.group > 0 ? c.rows / c.group : 0) * c.num_kv_heads * c.head_dim
                                     : c.rows * c.num_kv_heads;
}
CANOPY_HD int64_t QuantVScaleCount(const QuantKvCache& c) { return c.rows * c.num_kv_heads; }
CANOPY_HD int64_t QuantResElems(const QuantKvCache& c) {
  return c.format == KvFormat::kInt4 ? c.res_rows * c.num_kv_heads * c.head_dim : 0;
}

// The view of layer l (layers = 1).
CANOPY_HD QuantKvCache QuantKvLayer(const QuantKvCache& c, int32_t l) {
  QuantKvCache x = c;
  x.layers = 1;
  const int64_t cb = QuantCodeBytesPerLayer(c), ks = QuantKScaleCount(c), vs = QuantVScaleCount(c);
  x.k = static_cast<char*>(c.k) + l * cb;
  x.v = static_cast<char*>(c.v) + l * cb;
  x.k_scale = c.k_scale + l * ks;
  x.v_scale = c.v_scale + l * vs;
  if (c.format == KvFormat::kInt4) {
    x.k_zero = c.k_zero + l * ks;
    x.v_zero = c.v_zero + l * vs;
    const int64_t re = QuantResElems(c) * ResElemBytes(c.res_dtype);
    x.res_k = static_cast<char*>(c.res_k) + l * re;
    x.res_v = static_cast<char*>(c.res_v) + l * re;
  }
  return x;
}

// Quantized length for L committed keys (int4; see the header comment).
CANOPY_HD int64_t CompletedQuantLen(int64_t len, int32_t group, int32_t residual) {
  const int64_t n = len - residual;
  return n <= 0 ? 0 : n / group * group;
}

// ---------------------------------------------------------------------------------------------
// fp8 e4m3 (E4M3FN) conversions, exact and identical on host and device.

// f32 -> e4m3 bits, round to nearest even, saturating to +-448; NaN -> 0x7f (sign kept).
CANOPY_HD uint8_t F32ToE4M3(float x) {
  const uint32_t u = F32Bits(x);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7fu;       // NaN
  if (abs >= 0x43e00000u) return sign | 0x7eu;      // >= 448 (and inf): saturate
  if (abs < 0x3c800000u) {                          // below 2^-6: subnormal, m * 2^-9
    const float m = rintf(F32FromBits(abs) * 512.f);  // exact scaling, then round half even
    return sign | static_cast<uint8_t>(m);          // m == 8 is 2^-6, the smallest normal: 0x08
  }
  int32_t e = static_cast<int32_t>(abs >> 23) - 127;  // -6 .. 8
  uint32_t mant = abs & 0x7fffffu;
  // Keep 3 mantissa bits: add half an ulp (1 << 19) minus one plus the kept lsb, then truncate.
  mant += 0x7ffffu + ((mant >> 20) & 1u);
  if (mant & 0x800000u) {  // carried into the exponent
    mant = 0;
    e += 1;
  }
  const uint32_t m3 = (mant >> 20) & 7u;
  if (e > 8 || (e == 8 && m3 == 7u)) return sign | 0x7eu;  // would round past 448
  return sign | static_cast<uint8_t>(((e + 7) << 3) | m3);
}

CANOPY_HD float E4M3ToF32(uint8_t b) {
  const uint32_t sign = static_cast<uint32_t>(b & 0x80u) << 24;
  const uint32_t e = (b >> 3) & 0xfu, m = b & 7u;
  if (e == 0xfu && m == 7u) return F32FromBits(sign | 0x7fc00000u);  // NaN
  if (e == 0) {  // subnormal: m * 2^-9
    const float x = static_cast<float>(m) * 0.001953125f;
    return sign ? -x : x;
  }
  return F32FromBits(sign | ((e + 120u) << 23) | (m << 20));
}

// ---------------------------------------------------------------------------------------------
// Row quantizers (one (token, head) row, or one set of values), shared by the CPU and CUDA
// kernels so both write identical codes.

CANOPY_HD float QuantRint(float x) { return rintf(x); }

// int8: q[0..n), returns the scale.
CANOPY_HD float QuantizeInt8Row(const float* x, int64_t stride, int32_t n, int8_t* q) {
  float a = 0.f;
  for (int32_t i = 0; i < n; ++i) a = fmaxf(a, fabsf(x[i * stride]));
  if (!(a > 0.f)) {
    for (int32_t i = 0; i < n; ++i) q[i] = 0;
    return a == 0.f ? 0.f : a;  // NaN stays NaN (and poisons the row, as it would unquantized)
  }
  const float inv = 127.f / a;
  for (int32_t i = 0; i < n; ++i) {
    float r = QuantRint(x[i * stride] * inv);
    r = r > 127.f ? 127.f : (r < -127.f ? -127.f : r);
    q[i] = r == r ? static_cast<int8_t>(r) : 0;  // NaN inputs: code 0 (never an undefined cast)
  }
  return a / 127.f;
}

CANOPY_HD float QuantizeFp8Row(const float* x, int64_t stride, int32_t n, uint8_t* q) {
  float a = 0.f;
  for (int32_t i = 0; i < n; ++i) a = fmaxf(a, fabsf(x[i * stride]));
  if (!(a > 0.f)) {
    for (int32_t i = 0; i < n; ++i) q[i] = 0;
    return a == 0.f ? 0.f : a;
  }
  const float inv = 448.f / a;
  for (int32_t i = 0; i < n; ++i) q[i] = F32ToE4M3(x[i * stride] * inv);
  return a / 448.f;
}

// int4 asymmetric parameters of n values x[i * stride]: returns the scale, sets *zero (the min).
CANOPY_HD float Int4Params(const float* x, int64_t stride, int32_t n, float* zero) {
  float lo = x[0], hi = x[0];
  for (int32_t i = 1; i < n; ++i) {
    lo = fminf(lo, x[i * stride]);
    hi = fmaxf(hi, x[i * stride]);
  }
  *zero = lo;
  return (hi - lo) / 15.f;
}
CANOPY_HD uint8_t Int4Code(float x, float scale, float zero) {
  if (!(scale > 0.f)) return 0;
  float r = QuantRint((x - zero) / scale);
  r = r > 15.f ? 15.f : (r < 0.f ? 0.f : r);
  return r == r ? static_cast<uint8_t>(r) : 0;
}
CANOPY_HD float Int4Dequant(uint32_t code, float scale, float zero) { return static_cast<float>(code) * scale + zero; }

// ---------------------------------------------------------------------------------------------
// Element access for attention kernels that load one element at a time (CUDA v1, the naive CPU
// kernel): key or value channel d of head h of sequence position j. `c` is a single-layer view;
// `start` the sequence's first row, `quant_len` its quantized keys, `res_start` its ring.
CANOPY_HD float LoadQuantKv(const QuantKvCache& c, bool value, int64_t start, int64_t quant_len, int64_t res_start,
                            int64_t j, int32_t h, int32_t d) {
  const int32_t H = c.num_kv_heads, D = c.head_dim;
  if (c.format == KvFormat::kInt4 && j >= quant_len) {
    const int64_t row = res_start + j % c.ring;
    return LoadAsF32(value ? c.res_v : c.res_k, c.res_dtype, (row * H + h) * D + d);
  }
  const int64_t row = start + j;
  if (c.format == KvFormat::kInt8) {
    const int8_t q = static_cast<const int8_t*>(value ? c.v : c.k)[(row * H + h) * D + d];
    return static_cast<float>(q) * (value ? c.v_scale : c.k_scale)[row * H + h];
  }
  if (c.format == KvFormat::kFp8) {
    const uint8_t q = static_cast<const uint8_t*>(value ? c.v : c.k)[(row * H + h) * D + d];
    return E4M3ToF32(q) * (value ? c.v_scale : c.k_scale)[row * H + h];
  }
  const uint8_t byte = static_cast<const uint8_t*>(value ? c.v : c.k)[(row * H + h) * (D / 2) + d / 2];
  const uint32_t code = (d & 1) ? (byte >> 4) : (byte & 15u);
  if (value) return Int4Dequant(code, c.v_scale[row * H + h], c.v_zero[row * H + h]);
  const int64_t p = ((row / c.group) * H + h) * D + d;
  return Int4Dequant(code, c.k_scale[p], c.k_zero[p]);
}

// ---------------------------------------------------------------------------------------------
// Batches of sequences for the cache ops (host arrays).
struct QuantKvBatch {
  int32_t batch = 0;
  const int32_t* kv_start = nullptr;   // [batch] first row of each sequence's region
  const int32_t* res_start = nullptr;  // [batch] int4: first row of each sequence's ring
};

struct QuantAppendParams {
  QuantKvBatch seqs;
  const int32_t* qo_indptr = nullptr;  // [batch + 1]: new tokens of each sequence
  const int32_t* pos_before = nullptr; // [batch]: position of each sequence's first new token
  const int32_t* quant_len = nullptr;  // [batch] int4: quantized keys (the ring check); may be null otherwise
  const float* k = nullptr;            // [n][H][D] f32 (device memory on CUDA)
  const float* v = nullptr;
  int64_t n = 0;
};

// Checks: the cache description (dtypes, sizes, group, ring).
Status CheckQuantKvCache(const QuantKvCache& c);
// Checks a batch against a cache: regions inside the rows, int4 regions aligned to G, rings
// inside res_rows.
Status CheckQuantKvBatch(const QuantKvCache& c, const QuantKvBatch& b, const char* op);
Status CheckQuantAppend(const QuantKvCache& c, const QuantAppendParams& p);
// from/to checks for QuantizeKvGroups / RestoreKvGroups (multiples of G where required).
Status CheckQuantGroups(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* from, const int32_t* to,
                        bool restore);
Status CheckQuantCommit(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* prefix_lens, const int32_t* tree_indptr,
                        const int32_t* accepted_count, const int32_t* accepted_nodes, int64_t num_nodes);
Status CheckDequantizeKv(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* kv_lens, const int32_t* quant_lens);

namespace cpu {
// c: one layer view (AppendQuantKv, DequantizeKv) or all layers (the others).
Status AppendQuantKv(const QuantKvCache& layer, const QuantAppendParams& p);
Status QuantizeKvGroups(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* from, const int32_t* to);
Status RestoreKvGroups(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* from, const int32_t* to);
// Tree commit: prefix_lens [B], tree_indptr [B+1], accepted_count [B], accepted_nodes [N]
// exactly as in kv_commit.h (positions are relative to each sequence's region / ring);
// new_lens [B] out.
Status CommitQuantKv(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* prefix_lens, const int32_t* tree_indptr,
                     const int32_t* accepted_count, const int32_t* accepted_nodes, int64_t num_nodes, int32_t* new_lens);
// kv_lens [B], quant_lens [B] (int4; null = all quantized); out [sum kv_lens][H][D] f32.
Status DequantizeKv(const QuantKvCache& layer, const QuantKvBatch& b, const int32_t* kv_lens, const int32_t* quant_lens,
                    float* k_out, float* v_out);
}  // namespace cpu

namespace cuda {
Status AppendQuantKv(const QuantKvCache& layer, const QuantAppendParams& p);
Status QuantizeKvGroups(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* from, const int32_t* to);
Status RestoreKvGroups(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* from, const int32_t* to);
Status CommitQuantKv(const QuantKvCache& c, const QuantKvBatch& b, const int32_t* prefix_lens, const int32_t* tree_indptr,
                     const int32_t* accepted_count, const int32_t* accepted_nodes, int64_t num_nodes, int32_t* new_lens);
Status DequantizeKv(const QuantKvCache& layer, const QuantKvBatch& b, const int32_t* kv_lens, const int32_t* quant_lens,
                    float* k_out, float* v_out);
}  // namespace cuda

}  // namespace canopy
