// Row-major GEMM over the BLAS the engine links (OpenBLAS; chosen by measurement, docs/blas.md).
#pragma once

#include <cstdint>

namespace blocklab {

// C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C, all row-major with leading dimensions
// lda, ldb, ldc. op(X) is X or X^T as trans_a / trans_b say.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// Threads the BLAS and the engine's own parallel kernels may use (1 = the caller's thread only).
void set_blas_threads(int threads);
int blas_threads();

}  // namespace blocklab
