// Row-major GEMM. float32 runs on oneDNN's matmul where the CPU has AVX-512 and on OpenBLAS elsewhere (each
// chosen by measurement: docs/blas.md, docs/performance.md); float64 always on OpenBLAS.
#pragma once

#include <bit>
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

// The library that runs the float32 GEMMs (gemm<float> at matmul precision f32; bf16 GEMMs: Bf16Support).
//   onednn    oneDNN's f32 matmul (brgemm), one primitive per shape and layout, made on first use and kept
//             per thread. Chosen where oneDNN sees AVX-512 (avx512_core): a CPU whose AVX-512 is full width
//             (Zen 5, Xeon) doubles AVX2's FMA rate, which this OpenBLAS build leaves to its AVX2 kernels.
//             Not on AMD family 0x19 (Zen 4), which splits AVX-512 into 256-bit halves: both libraries
//             measured level there; nor where OpenBLAS runs its own AVX-512 kernels (core SkylakeX,
//             Cooperlake, SapphireRapids: no OPENBLAS_CORETYPE=Haswell), level or ahead on a Xeon with AMX.
//             A rule by what the CPU and OpenBLAS are, not a timing at start, so that every process
//             on a machine runs the same library (the two agree to rounding, not to the bit). Products under
//             a million multiply-adds (kOneDnnMinMultiplyAdds: the web pages' 16-token shapes) and shapes
//             oneDNN has only a reference implementation for run on OpenBLAS, the faster there
//             (docs/blas.md).
//   openblas  OpenBLAS's sgemm: everywhere else.
// The environment variable BLOCKLAB_GEMM=openblas|onednn overrides the choice for the process (for
// comparisons); ScopedGemmLibrary overrides it on one thread. The two give the same products to float32 rounding, not the same bits; each is bitwise
// deterministic for a given thread count.
enum class GemmLibrary { openblas, onednn };
inline constexpr int64_t kOneDnnMinMultiplyAdds = int64_t(1) << 20;
std::string_view name_of(GemmLibrary library);  // "openblas" or "onednn"
std::optional<GemmLibrary> parse_gemm_library(std::string_view name);
struct GemmChoice {
  GemmLibrary library = GemmLibrary::openblas;
  std::string how;  // which, and why: "onednn: oneDNN 2.6.3 f32 matmul, avx512_core (the CPU has AVX-512)"
};
const GemmChoice& gemm_choice();
// Empty, or what is wrong with BLOCKLAB_GEMM or BLOCKLAB_BF16 (a value neither names; the process then runs
// its default): one line naming the variable, what it expects and what it holds. The CLI refuses to start.
std::string gemm_environment_error();
// The library gemm<float> uses on this thread now: the scoped override, else gemm_choice().
GemmLibrary gemm_library();
class ScopedGemmLibrary {
 public:
  explicit ScopedGemmLibrary(GemmLibrary library);
  ~ScopedGemmLibrary();
  ScopedGemmLibrary(const ScopedGemmLibrary&) = delete;
  ScopedGemmLibrary& operator=(const ScopedGemmLibrary&) = delete;

 private:
  int previous_;
};

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
// Inline, so that the rounding loops (one clone per ISA) vectorise it: called out of line it cost 2.6 ns a
// value, a third of the bf16 GEMM's time at the benchmark's shape.
inline uint16_t bf16_bits(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint32_t nearest = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (u >> 16) | 0x0040u;  // NaN: quiet, sign kept
  return uint16_t((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : nearest);  // a select, no branch
}
inline float bf16_value(uint16_t bits) { return std::bit_cast<float>(uint32_t(bits) << 16); }

}  // namespace blocklab
