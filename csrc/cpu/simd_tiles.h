// Explicit SIMD vectors for the CPU tiles (GCC / clang vector extensions), included INSIDE
// the per-ISA namespace of a tiles header (attention_tiles.h, linear_tiles.h) after
// CANOPY_TILE_VEC_BYTES is defined: 64 (zmm) in the AVX-512 copies, 32 (ymm) in the baseline,
// 16 (one NEON q register) in the aarch64 attention tiles.
// Everything has internal linkage through the includer's anonymous namespace.
// No include guard on purpose: each tiles namespace gets its own copy.

#if defined(CANOPY_TILE_NEON_PAIR)
// aarch64 with 8 lanes (linear_neon.cc): GCC keeps a 32-byte generic vector in memory there
// (no 256-bit mode), so VecF is a pair of q registers instead, with the operations the tiles use.
static_assert(CANOPY_TILE_VEC_BYTES == 32, "a NEON pair holds 8 lanes");
struct VecF {
  float32x4_t v[2];  // lanes 0-3, 4-7 (VecF{} is zero)
  float operator[](int i) const { return i < 4 ? v[0][i] : v[1][i - 4]; }
};
inline VecF operator+(VecF a, VecF b) { return VecF{{vaddq_f32(a.v[0], b.v[0]), vaddq_f32(a.v[1], b.v[1])}}; }
inline VecF operator*(VecF a, VecF b) { return VecF{{vmulq_f32(a.v[0], b.v[0]), vmulq_f32(a.v[1], b.v[1])}}; }
inline VecF& operator+=(VecF& a, VecF b) { return a = a + b; }
constexpr int kLanes = 8;
inline VecF LoadU(const float* p) { return VecF{{vld1q_f32(p), vld1q_f32(p + 4)}}; }
inline void StoreU(float* p, VecF v) {
  vst1q_f32(p, v.v[0]);
  vst1q_f32(p + 4, v.v[1]);
}
inline VecF Splat(float x) { return VecF{{vdupq_n_f32(x), vdupq_n_f32(x)}}; }
#else
typedef float VecF __attribute__((vector_size(CANOPY_TILE_VEC_BYTES)));
typedef float VecFU __attribute__((vector_size(CANOPY_TILE_VEC_BYTES), aligned(4), may_alias));
constexpr int kLanes = CANOPY_TILE_VEC_BYTES / 4;
inline VecF LoadU(const float* p) { return *reinterpret_cast<const VecFU*>(p); }
inline void StoreU(float* p, VecF v) { *reinterpret_cast<VecFU*>(p) = v; }
inline VecF Splat(float x) { return VecF{} + x; }
#endif

// Prefetches n rows of `bytes` bytes each, `stride` elements apart (the next key block:
// rows of one kv head are Hkv*D floats apart in the cache, too far for the hardware
// prefetchers to follow).
inline void PrefetchRows(const char* base, int64_t stride_bytes, int n, int bytes) {
  for (int j = 0; j < n; ++j)
    for (int b = 0; b < bytes; b += 64) __builtin_prefetch(base + j * stride_bytes + b, 0, 2);  // to L2
}

#if defined(CANOPY_TILE_NEON_PAIR)
// The 8-lane tree of the x86 AVX2 copy below, lane for lane: with p = lanes 0-3 + lanes 4-7,
// out = (p0 + p2) + (p1 + p3).
inline void HSum4(VecF a0, VecF a1, VecF a2, VecF a3, float* out) {
  const VecF a[4] = {a0, a1, a2, a3};
  for (int i = 0; i < 4; ++i) {
    const float32x4_t p = vaddq_f32(a[i].v[0], a[i].v[1]);
    out[i] = vpadds_f32(vadd_f32(vget_low_f32(p), vget_high_f32(p)));
  }
}
#else
// Two-source lane shuffles (GCC and clang spell them differently).
typedef int32_t VecI __attribute__((vector_size(CANOPY_TILE_VEC_BYTES)));
#if defined(__clang__)
#define CANOPY_SHUF2(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define CANOPY_SHUF2(a, b, ...) __builtin_shuffle(a, b, VecI{__VA_ARGS__})
#endif

// out[i] = sum of the lanes of a_i, for four vectors at once (a transposing reduction:
// about ten shuffles and adds instead of four separate horizontal sums).
inline void HSum4(VecF a0, VecF a1, VecF a2, VecF a3, float* out) {
#if CANOPY_TILE_VEC_BYTES == 64
  const VecF s0 = CANOPY_SHUF2(a0, a1, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
                  CANOPY_SHUF2(a0, a1, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  const VecF s1 = CANOPY_SHUF2(a2, a3, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
                  CANOPY_SHUF2(a2, a3, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  // Lanes 0-7: a0 (8 partials), 8-15: a1; likewise a2, a3 in s1.
  const VecF t = CANOPY_SHUF2(s0, s1, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
                 CANOPY_SHUF2(s0, s1, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  // Lanes 4i..4i+3: four partials of a_i.
  const VecF u = t + CANOPY_SHUF2(t, t, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  const VecF v = u + CANOPY_SHUF2(u, u, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
  out[0] = v[0];
  out[1] = v[4];
  out[2] = v[8];
  out[3] = v[12];
#elif CANOPY_TILE_VEC_BYTES == 16
  // Pairwise: t = (a0_0+a0_1, a0_2+a0_3, a1_0+a1_1, a1_2+a1_3), likewise u for a2, a3; then
  // lane i of t' = (a_i0+a_i1) + (a_i2+a_i3) (NEON's faddp, written portably).
  const VecF t = CANOPY_SHUF2(a0, a1, 0, 2, 4, 6) + CANOPY_SHUF2(a0, a1, 1, 3, 5, 7);
  const VecF u = CANOPY_SHUF2(a2, a3, 0, 2, 4, 6) + CANOPY_SHUF2(a2, a3, 1, 3, 5, 7);
  const VecF v = CANOPY_SHUF2(t, u, 0, 2, 4, 6) + CANOPY_SHUF2(t, u, 1, 3, 5, 7);
  out[0] = v[0];
  out[1] = v[1];
  out[2] = v[2];
  out[3] = v[3];
#else
  const VecF s0 = CANOPY_SHUF2(a0, a1, 0, 1, 2, 3, 8, 9, 10, 11) + CANOPY_SHUF2(a0, a1, 4, 5, 6, 7, 12, 13, 14, 15);
  const VecF s1 = CANOPY_SHUF2(a2, a3, 0, 1, 2, 3, 8, 9, 10, 11) + CANOPY_SHUF2(a2, a3, 4, 5, 6, 7, 12, 13, 14, 15);
  // Lanes 0-3: a0, 4-7: a1 (s0); a2, a3 (s1).
  const VecF t = CANOPY_SHUF2(s0, s1, 0, 1, 4, 5, 8, 9, 12, 13) + CANOPY_SHUF2(s0, s1, 2, 3, 6, 7, 10, 11, 14, 15);
  // Lanes 2i, 2i+1: two partials of a_i.
  const VecF v = t + CANOPY_SHUF2(t, t, 1, 0, 3, 2, 5, 4, 7, 6);
  out[0] = v[0];
  out[1] = v[2];
  out[2] = v[4];
  out[3] = v[6];
#endif
}

#undef CANOPY_SHUF2
#endif  // CANOPY_TILE_NEON_PAIR
