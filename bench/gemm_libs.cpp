// Measures single-precision GEMM (C = A * B^T, the shape of a Linear layer) in one BLAS library.
// Built once per library (OpenBLAS, BLIS, oneDNN) by bench/measure_gemm_libs.sh; the results
// table lives in docs/blas.md. Not part of the product: it is how the product's BLAS was chosen.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#if defined(USE_DNNL)
#include <dnnl.h>
static const char* kLib = "oneDNN";
static void sgemm_nt(int m, int n, int k, const float* a, const float* b, float* c) {
  // Row-major C[m,n] = A[m,k] * B[n,k]^T
  dnnl_sgemm('N', 'T', m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
}
static void set_threads(int) {}
#else
#include <cblas.h>
#if defined(USE_BLIS)
static const char* kLib = "BLIS";
extern "C" void bli_thread_set_num_threads(long);
static void set_threads(int t) { bli_thread_set_num_threads(t); }
#else
#ifndef LIB_LABEL
#define LIB_LABEL "OpenBLAS"
#endif
static const char* kLib = LIB_LABEL;
extern "C" void openblas_set_num_threads(int);
static void set_threads(int t) { openblas_set_num_threads(t); }
#endif
static void sgemm_nt(int m, int n, int k, const float* a, const float* b, float* c) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
}
#endif

int main(int argc, char** argv) {
  int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  set_threads(threads);
  struct Shape { int m, n, k; const char* what; };
  const Shape shapes[] = {
      {16, 256, 64, "interactive FFN linear1 (16 tok, d 64, d_ff 256)"},
      {16, 64, 256, "interactive FFN linear2"},
      {640, 2048, 512, "copy task linear1 (32x20 tok)"},
      {640, 512, 2048, "copy task linear2"},
      {4096, 2048, 512, "bench linear1 (4096 tok)"},
      {4096, 1536, 512, "bench in_proj (4096 tok)"},
      {256, 256, 64, "attention scores per head (T 256, d_head 64)"},
  };
  for (const Shape& s : shapes) {
    std::vector<float> a(size_t(s.m) * s.k), b(size_t(s.n) * s.k), c(size_t(s.m) * s.n);
    for (size_t i = 0; i < a.size(); ++i) a[i] = float((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < b.size(); ++i) b[i] = float((i * 104729) % 1000) / 1000.0f - 0.5f;
    double flops = 2.0 * s.m * s.n * s.k;
    int reps = std::max(5, int(2e9 / flops));
    reps = std::min(reps, 2000);
    sgemm_nt(s.m, s.n, s.k, a.data(), b.data(), c.data());  // warm-up
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      sgemm_nt(s.m, s.n, s.k, a.data(), b.data(), c.data());
      double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::min(best, dt);
    }
    std::printf("%-9s threads=%d  %5dx%5dx%5d  min %10.3f us  %7.1f GFLOP/s  %s\n", kLib, threads, s.m, s.n,
                s.k, best * 1e6, flops / best / 1e9, s.what);
  }
}
