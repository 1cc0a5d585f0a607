// QuantizeRows (csrc/common/quantize_rows.h): llama.cpp's reference quantizers (quantize.h), one
// row at a time, rows spread over the thread pool.
#include <atomic>
#include <cmath>
#include <string>
#include <vector>

#include "../common/quantize.h"
#include "../common/quantize_rows.h"
#include "thread_pool.h"

namespace canopy {
namespace cpu {

Status QuantizeRows(QuantType type, const void* src, DType src_dtype, int64_t rows, int64_t cols, uint8_t* dst) {
  const QuantTypeInfo info = GetQuantTypeInfo(type);
  if (info.block == 0) return Status::InvalidArgument("quantizeRows: type must be a GGUF block type canopy writes");
  if (!IsFloatDType(src_dtype)) return Status::InvalidArgument(std::string("quantizeRows: x must be f32, f16 or bf16; received ") + DTypeName(src_dtype));
  if (rows < 0 || cols <= 0 || cols % info.block != 0) {
    return Status::InvalidArgument(std::string("quantizeRows: columns (") + std::to_string(cols) + ") must be a positive multiple of " + info.name +
                                   "'s block of " + std::to_string(info.block));
  }
  const int64_t row_bytes = QuantRowBytes(type, cols);
  const int esize = DTypeSize(src_dtype);
  // The first non-finite element (row-major index), or -1.
  std::atomic<int64_t> bad{-1};
  // About 64 K values per chunk: rows of a 1B model's matrices are 2K-8K values.
  const int64_t grain = cols >= 65536 ? 1 : 65536 / cols;
  ParallelFor(rows, grain, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* s = static_cast<const uint8_t*>(src) + r * cols * esize;
      for (int64_t i = 0; i < cols; ++i) row[i] = LoadAsF32(s, src_dtype, i);
      for (int64_t i = 0; i < cols; ++i) {
        if (!std::isfinite(row[i])) {
          int64_t at = r * cols + i, cur = bad.load();
          while ((cur < 0 || at < cur) && !bad.compare_exchange_weak(cur, at)) {
          }
          break;
        }
      }
      if (bad.load() >= 0) continue;
      quantize::QuantizeRow(type, row.data(), cols, dst + r * row_bytes);
    }
  });
  const int64_t at = bad.load();
  if (at >= 0) {
    return Status::InvalidArgument("quantizeRows: x holds a non-finite value at row " + std::to_string(at / cols) + ", column " + std::to_string(at % cols) +
                                   " (NaN or Infinity cannot be quantized)");
  }
  return Status::Ok();
}

}  // namespace cpu
}  // namespace canopy
