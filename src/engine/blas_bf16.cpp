// bf16 GEMMs: oneDNN's bf16 matmul where the CPU has bf16 dot products (AVX512-BF16, AMX), an exact
// emulation through the float32 GEMM elsewhere. See blas.h for the numbers both compute.
#include <cblas.h>

#include <bit>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "engine/blas.h"
#include "engine/blas_internal.h"

namespace blocklab {

namespace {

thread_local MatmulPrecision t_precision = MatmulPrecision::f32;

Bf16Support detect_bf16_support() {
  Bf16Support s;
  const std::string onednn = onednn_version();
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  const unsigned bf16_bits_mask = dnnl_cpu_isa_avx512_core_bf16;  // AMX's mask contains it
  const bool has_bf16 = (unsigned(isa) & bf16_bits_mask) == bf16_bits_mask;
  const char* env = std::getenv("BLOCKLAB_BF16");
  const bool forced = env && std::strcmp(env, "emulate") == 0;
  s.native = has_bf16 && !forced;
  if (s.native)
    s.how = "native: " + onednn + ", " + isa_name(isa);
  else if (forced)
    s.how = "emulated: BLOCKLAB_BF16=emulate (the CPU's ISA is " + std::string(isa_name(isa)) + ")";
  else
    s.how = "emulated: this CPU's ISA is " + std::string(isa_name(isa)) + ", without bf16 dot products";
  return s;
}

// One row of n values rounded to bfloat16. Cloned per ISA: the loop vectorises.
__attribute__((target_clones("avx512f", "avx2", "default"))) void round_row_bits(const float* in, int64_t n,
                                                                                uint16_t* out) {
  for (int64_t c = 0; c < n; ++c) out[c] = bf16_bits(in[c]);
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void round_row_values(const float* in, int64_t n,
                                                                                  float* out) {
  for (int64_t c = 0; c < n; ++c) out[c] = bf16_value(bf16_bits(in[c]));
}

// Rows of `cols` values at stride `ld`, rounded, written densely; split over the threads when large.
template <typename Out, void (*round_row)(const float*, int64_t, Out*)>
void round_rows(const float* src, int64_t rows, int64_t cols, int64_t ld, Out* dst) {
#pragma omp parallel for schedule(static) if (rows * cols >= (int64_t(1) << 16))
  for (int64_t r = 0; r < rows; ++r) round_row(src + r * ld, cols, dst + r * cols);
}

void round_rows_bits(const float* src, int64_t rows, int64_t cols, int64_t ld, uint16_t* dst) {
  round_rows<uint16_t, round_row_bits>(src, rows, cols, ld, dst);
}
void round_rows_values(const float* src, int64_t rows, int64_t cols, int64_t ld, float* dst) {
  round_rows<float, round_row_values>(src, rows, cols, ld, dst);
}

// Rows of `cols` values at stride `ld`, rounded and written transposed: dst[c][r].
void round_transposed_bits(const float* src, int64_t rows, int64_t cols, int64_t ld, uint16_t* dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = bf16_bits(src[r * ld + c]);
}

// A thread's rounding buffer, 64-byte aligned (std::vector's is 16-byte aligned, and AMX tile loads from it
// cross cache lines): the benchmark's bf16 GEMM, one thread, 16.8 -> 15.7 ms (Xeon with AMX, 2026-12-02).
class AlignedBits {
 public:
  uint16_t* get(size_t count) {
    if (count > capacity_) {
      const size_t bytes = (count * sizeof(uint16_t) + 63) / 64 * 64;
      data_.reset(static_cast<uint16_t*>(std::aligned_alloc(64, bytes)));
      if (!data_) throw std::bad_alloc();
      capacity_ = count;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(uint16_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint16_t[], Free> data_;
  size_t capacity_ = 0;
};

// ---- native: oneDNN matmul, bf16 x bf16 -> f32 ----

struct PreparedMatmul {
  dnnl::memory::desc a, b, c;
  dnnl::matmul matmul;
  bool plain = false;  // A and B must be given row-major ([m][k], [k][n]): oneDNN took no transposed layout
  bool available = true;  // false: oneDNN has no bf16 implementation for this shape (it is emulated)
};

// One primitive per shape, made on first use (oneDNN's JIT); not available where oneDNN has no
// implementation for it.
PreparedMatmul make_matmul(const MatmulKey& key, float alpha, float beta) {
  using dims = dnnl::memory::dims;
  using dt = dnnl::memory::data_type;
  const int64_t m = key.m, n = key.n, k = key.k;
  const dnnl::primitive_attr attr = scaled_attr(alpha, beta);
  PreparedMatmul p;
  p.c = dnnl::memory::desc(dims{m, n}, dt::f32, dims{key.ldc, 1});
  // A and B arrive dense in their stored layout: A is [m][k] (or [k][m] when transposed), B [k][n] (or
  // [n][k]). Where oneDNN has no implementation for a transposed layout, they are transposed while rounded.
  for (const bool plain : {false, true}) {
    p.plain = plain;
    p.a = dnnl::memory::desc(dims{m, k}, dt::bf16, key.ta && !plain ? dims{1, m} : dims{k, 1});
    p.b = dnnl::memory::desc(dims{k, n}, dt::bf16, key.tb && !plain ? dims{1, k} : dims{n, 1});
    try {
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(p.a, p.b, p.c), attr, onednn_engine());
      p.matmul = dnnl::matmul(pd);
      break;
    } catch (const dnnl::error&) {
      p.available = !plain;
    }
  }
  return p;
}

// false where oneDNN has no implementation for the shape (C untouched).
bool gemm_bf16_native(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                      int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  thread_local AlignedBits a_bits, b_bits;
  dnnl::stream& stream = onednn_stream();
  const MatmulKey key = matmul_key(ta, tb, m, n, k, 0, 0, ldc, alpha, beta);  // A and B dense after rounding
  const PreparedMatmul* prepared = cached_matmul<PreparedMatmul>(key, [&] { return make_matmul(key, alpha, beta); });
  if (!prepared) return false;
  const PreparedMatmul& p = *prepared;
  uint16_t* a16 = a_bits.get(size_t(m * k));
  uint16_t* b16 = b_bits.get(size_t(k * n));
  if (!ta) round_rows_bits(a, m, k, lda, a16);
  else if (!p.plain) round_rows_bits(a, k, m, lda, a16);
  else round_transposed_bits(a, k, m, lda, a16);
  if (!tb) round_rows_bits(b, k, n, ldb, b16);
  else if (!p.plain) round_rows_bits(b, n, k, ldb, b16);
  else round_transposed_bits(b, n, k, ldb, b16);
  dnnl::memory am(p.a, onednn_engine(), a16), bm(p.b, onednn_engine(), b16), cm(p.c, onednn_engine(), c);
  try {  // oneDNN checks its arguments before it writes C
    p.matmul.execute(stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    stream.wait();
  } catch (const dnnl::error&) {
    return false;
  }
  return true;
}

// ---- emulated: the inputs rounded to bfloat16 values, then the float32 GEMM ----

void gemm_bf16_emulated(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                        int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  thread_local std::vector<float> ra, rb;
  ra.resize(size_t(m * k));
  rb.resize(size_t(k * n));
  if (ta) round_rows_values(a, k, m, lda, ra.data());
  else round_rows_values(a, m, k, lda, ra.data());
  if (tb) round_rows_values(b, n, k, ldb, rb.data());
  else round_rows_values(b, k, n, ldb, rb.data());
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n),
              int(k), alpha, ra.data(), int(ta ? m : k), rb.data(), int(tb ? k : n), beta, c, int(ldc));
}

}  // namespace

MatmulPrecision matmul_precision() { return t_precision; }

ScopedMatmulPrecision::ScopedMatmulPrecision(MatmulPrecision precision) : previous_(t_precision) {
  t_precision = precision;
}
ScopedMatmulPrecision::~ScopedMatmulPrecision() { t_precision = previous_; }

const Bf16Support& bf16_support() {
  static const Bf16Support support = detect_bf16_support();
  return support;
}

void gemm_bf16(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // nothing to multiply: C = beta C, as the BLAS does
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  if (bf16_support().native && gemm_bf16_native(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
  gemm_bf16_emulated(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace blocklab
