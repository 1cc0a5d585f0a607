// Quantizing a float matrix into a GGUF block type (csrc/common/quantize.h states the math), on
// the CPU: rows [rows][cols] of f32, f16 or bf16 into rows of QuantRowBytes(type, cols) bytes.
// Each row is quantized on its own (threads split the rows; the result does not depend on how).
// cols must be a multiple of the type's block; a row holding NaN or Infinity is refused with
// InvalidArgument naming the row and column (ggml would quantize it to garbage).
#pragma once

#include <cstdint>

#include "dtype.h"
#include "quant_blocks.h"
#include "status.h"

namespace canopy {
namespace cpu {

Status QuantizeRows(QuantType type, const void* src, DType src_dtype, int64_t rows, int64_t cols, uint8_t* dst);

}  // namespace cpu
}  // namespace canopy
