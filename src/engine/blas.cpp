#include "engine/blas.h"

#include "engine/blas_internal.h"

#include <cblas.h>
#include <omp.h>

extern "C" {
void openblas_set_num_threads(int);
int openblas_get_num_threads(void);
char* openblas_get_config(void);
}

namespace blocklab {

namespace {

// OpenBLAS's OpenMP build runs a GEMM on omp_get_max_threads() of the calling thread. Below about a
// million multiply-adds the hand-off to other threads costs more than it saves: those run on this thread.
class SmallOnOneThread {
 public:
  explicit SmallOnOneThread(int64_t multiply_adds) {
    if (multiply_adds < (int64_t(1) << 20) && (previous_ = omp_get_max_threads()) > 1) omp_set_num_threads(1);
    else previous_ = 0;
  }
  ~SmallOnOneThread() {
    if (previous_) omp_set_num_threads(previous_);
  }

 private:
  int previous_ = 0;
};

}  // namespace

template <>
void gemm<float>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (matmul_precision() == MatmulPrecision::bf16) return gemm_bf16(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  const SmallOnOneThread one(m * n * k);
  if (m * n * k >= kOneDnnMinMultiplyAdds && gemm_library() == GemmLibrary::onednn &&
      gemm_f32_onednn(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
    return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n),
              int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

template <>
void gemm<double>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                  int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  const SmallOnOneThread one(m * n * k);
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n),
              int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

void set_blas_threads(int threads) {
  threads = threads < 1 ? 1 : threads;
  openblas_set_num_threads(threads);
  omp_set_num_threads(threads);  // the engine's own row-parallel kernels (kernels_avx2.cpp)
}
int blas_threads() { return openblas_get_num_threads(); }
std::string blas_description() { return openblas_get_config(); }

std::string_view name_of(MatmulPrecision precision) { return precision == MatmulPrecision::bf16 ? "bf16" : "f32"; }

std::optional<MatmulPrecision> parse_precision(std::string_view name) {
  for (MatmulPrecision p : {MatmulPrecision::f32, MatmulPrecision::bf16})
    if (name == name_of(p)) return p;
  return std::nullopt;
}

}  // namespace blocklab
