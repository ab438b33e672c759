// Inside the engine's BLAS layer: what blas.cpp, blas_bf16.cpp and blas_onednn.cpp share. Not for other code.
#pragma once

#include <cstdint>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <unordered_map>

namespace blocklab {

// The bf16 GEMM that gemm<float> calls when this thread's matmul precision is bf16 (blas.h).
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// The float32 GEMM on oneDNN's matmul; false (C untouched) where oneDNN has only its reference
// implementation for the shape, or none: the caller then runs OpenBLAS.
bool gemm_f32_onednn(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                     int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// ---- oneDNN, shared by both ----

const dnnl::engine& onednn_engine();
dnnl::stream& onednn_stream();  // this thread's
std::string onednn_version();   // "oneDNN 2.6.3"
const char* isa_name(dnnl::cpu_isa isa);
// C = alpha * product + beta * C, as a matmul's attributes.
dnnl::primitive_attr scaled_attr(float alpha, float beta);

// What identifies a prepared matmul: the shape, the layouts, alpha and beta, and the threads it was made for
// (a primitive splits its work for the thread count it was created with).
struct MatmulKey {
  int64_t m, n, k, lda, ldb, ldc;
  bool ta, tb;
  uint32_t alpha, beta;  // bit patterns
  int threads;
  bool operator==(const MatmulKey&) const = default;
};
struct MatmulKeyHash {
  size_t operator()(const MatmulKey& key) const;
};
MatmulKey matmul_key(bool ta, bool tb, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc,
                     float alpha, float beta);

// This thread's prepared matmul for `key`, made by make() (a Prepared with a bool `available`) on first use
// and kept; nullptr where it is not available. One cache per Prepared type and thread, cleared past 512
// shapes: a bound for long-lived threads that see many.
template <typename Prepared, typename Make>
const Prepared* cached_matmul(const MatmulKey& key, Make&& make) {
  thread_local std::unordered_map<MatmulKey, Prepared, MatmulKeyHash> cache;
  if (auto it = cache.find(key); it != cache.end()) return it->second.available ? &it->second : nullptr;
  if (cache.size() >= 512) cache.clear();
  const Prepared& kept = cache.emplace(key, make()).first->second;
  return kept.available ? &kept : nullptr;
}

}  // namespace blocklab
