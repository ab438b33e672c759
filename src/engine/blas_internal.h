// Inside the engine's BLAS layer: the bf16 GEMM that gemm<float> calls when this thread's matmul
// precision is bf16 (blas.h).
#pragma once

#include <cstdint>

namespace blocklab {

void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace blocklab
