// CPU implementations of the row-wise Llama block ops (csrc/common/transformer_ops.h).
#include <cmath>
#include <limits>
#include <string>

#include "../common/transformer_ops.h"
#include "thread_pool.h"

namespace canopy {
namespace cpu {

Status RmsNorm(const float* x, const void* w, DType w_dtype, float eps, float* y, int64_t rows, int64_t dim) {
  if (!IsFloatDType(w_dtype) || dim <= 0) return Status::InvalidArgument("rmsNorm: bad weight dtype or dim");
  ParallelFor(rows, 16, [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) {
      const float* xr = x + n * dim;
      double ss = 0;  // sum of squares in double: dim can be large, values are not
      for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / dim + eps));
      float* yr = y + n * dim;
      for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * LoadAsF32(w, w_dtype, i);
    }
  });
  return Status::Ok();
}

Status Rope(const RopeParams& p) {
  const int D = p.head_dim, half = D / 2;
  if (D <= 0 || D % 2 != 0) return Status::InvalidArgument("rope: head_dim must be even");
  ParallelFor(p.rows, 8, [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) {
      const double pos = p.positions[n];
      for (int j = 0; j < half; ++j) {
        // angle in double: positions up to 1e6 times frequencies near 1 need the precision
        const double angle = pos * p.inv_freq[j];
        const float c = static_cast<float>(std::cos(angle) * p.attention_factor);
        const float s = static_cast<float>(std::sin(angle) * p.attention_factor);
        const int i0 = p.layout == RopeLayout::kInterleaved ? 2 * j : j;
        const int i1 = p.layout == RopeLayout::kInterleaved ? 2 * j + 1 : j + half;
        for (int h = 0; h < p.nq; ++h) {
          float* v = p.q + (n * p.nq + h) * D;
          const float a = v[i0], bb = v[i1];
          v[i0] = a * c - bb * s;
          v[i1] = a * s + bb * c;
        }
        for (int h = 0; h < p.nk; ++h) {
          float* v = p.k + (n * p.nk + h) * D;
          const float a = v[i0], bb = v[i1];
          v[i0] = a * c - bb * s;
          v[i1] = a * s + bb * c;
        }
      }
    }
  });
  return Status::Ok();
}

Status SwiGlu(const float* g, const float* u, float* h, int64_t n) {
  ParallelFor(n, 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) h[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
  });
  return Status::Ok();
}

Status GeGlu(const float* g, const float* u, float* h, int64_t n) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  ParallelFor(n, 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float z = g[i];
      h[i] = 0.5f * z * (1.f + std::tanh(kSqrt2OverPi * (z + 0.044715f * z * z * z))) * u[i];
    }
  });
  return Status::Ok();
}

Status Softcap(float* x, int64_t n, float cap) {
  if (!(cap > 0.f)) return Status::InvalidArgument("softcap: cap must be > 0; received " + std::to_string(cap));
  ParallelFor(n, 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] = cap * std::tanh(x[i] / cap);
  });
  return Status::Ok();
}

Status Scale(float* x, int64_t n, float s) {
  ParallelFor(n, 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] *= s;
  });
  return Status::Ok();
}

Status Embed(const int32_t* tokens, int64_t rows, const void* table, DType dtype, int64_t vocab, int64_t dim, float* x) {
  for (int64_t n = 0; n < rows; ++n) {
    if (tokens[n] < 0 || tokens[n] >= vocab) {
      return Status::InvalidArgument("embed: token id " + std::to_string(tokens[n]) + " at position " + std::to_string(n) +
                                     " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }
  }
  ParallelFor(rows, 4, [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n)
      for (int64_t i = 0; i < dim; ++i) x[n * dim + i] = LoadAsF32(table, dtype, tokens[n] * dim + i);
  });
  return Status::Ok();
}

Status EmbedQuant(const int32_t* tokens, int64_t rows, const void* table, QuantType type, int64_t vocab, int64_t dim, float* x) {
  const QuantTypeInfo info = GetQuantTypeInfo(type);
  if (info.block == 0) return Status::InvalidArgument("embed: unknown block type " + std::to_string(static_cast<int>(type)));
  if (dim % info.block != 0) {
    return Status::InvalidArgument(std::string("embed: ") + info.name + " rows need dim to be a multiple of " + std::to_string(info.block));
  }
  for (int64_t n = 0; n < rows; ++n) {
    if (tokens[n] < 0 || tokens[n] >= vocab) {
      return Status::InvalidArgument("embed: token id " + std::to_string(tokens[n]) + " at position " + std::to_string(n) +
                                     " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }
  }
  const int64_t row_bytes = QuantRowBytes(type, dim);
  ParallelFor(rows, 4, [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) {
      DequantizeRow(type, static_cast<const uint8_t*>(table) + tokens[n] * row_bytes, 0, dim, x + n * dim);
    }
  });
  return Status::Ok();
}

Status Argmax(const float* logits, int64_t rows, int64_t vocab, int32_t* best) {
  for (int64_t n = 0; n < rows; ++n) {
    const float* l = logits + n * vocab;
    // Strict '>' from -inf: ties keep the lowest id, NaN (never greater) counts as -inf,
    // and a row with nothing above -inf (all NaN: broken numbers) gives -1, never a token;
    // the CUDA kernel decides the same way.
    int64_t arg = -1;
    float best_value = -std::numeric_limits<float>::infinity();
    for (int64_t v = 0; v < vocab; ++v) {
      if (l[v] > best_value) {
        best_value = l[v];
        arg = v;
      }
    }
    best[n] = static_cast<int32_t>(arg);
  }
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
