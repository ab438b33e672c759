// Row-major GEMM over the BLAS the engine links (OpenBLAS; chosen by measurement, docs/blas.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace blocklab {

// C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C, all row-major with leading dimensions
// lda, ldb, ldc. op(X) is X or X^T as trans_a / trans_b say.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// Threads the BLAS and the engine's own parallel kernels may use (1 = the caller's thread only).
void set_blas_threads(int threads);
int blas_threads();
// The BLAS's own description: version, build options and the CPU core its kernels were chosen for.
std::string blas_description();

// The precision of the float GEMMs run on this thread (the linear layers and attention's products; the
// setting is per thread, like torch.autocast). bf16: both inputs rounded to bfloat16 (to nearest, ties
// to even), products accumulated in float32, the result float32 — what the CPU's AVX512-BF16 and AMX
// dot products compute. Weights, activations, gradients and every other kernel stay float32; double
// GEMMs are never rounded. Default f32.
enum class MatmulPrecision { f32, bf16 };
MatmulPrecision matmul_precision();
std::string_view name_of(MatmulPrecision precision);            // "f32" or "bf16"
std::optional<MatmulPrecision> parse_precision(std::string_view name);

class ScopedMatmulPrecision {
 public:
  explicit ScopedMatmulPrecision(MatmulPrecision precision);
  ~ScopedMatmulPrecision();
  ScopedMatmulPrecision(const ScopedMatmulPrecision&) = delete;
  ScopedMatmulPrecision& operator=(const ScopedMatmulPrecision&) = delete;

 private:
  MatmulPrecision previous_;
};

// How this process runs bf16 GEMMs. native: oneDNN's bf16 matmul on a CPU with AVX512-BF16 or AMX.
// Otherwise emulated: the inputs are rounded to bfloat16 values and multiplied by the float32 GEMM, which
// gives the same numbers (a product of two bfloat16 is exact in float32) but no speed. The environment
// variable BLOCKLAB_BF16=emulate forces the emulation (for comparing the two).
struct Bf16Support {
  bool native = false;
  std::string how;  // e.g. "native: oneDNN 2.6.3, avx512_core_amx" or "emulated: this CPU's ISA is avx2"
};
const Bf16Support& bf16_support();

// bfloat16 rounding (to nearest, ties to even; NaN stays NaN), as the bf16 GEMMs round their inputs.
uint16_t bf16_bits(float x);
float bf16_value(uint16_t bits);

}  // namespace blocklab
