// AVX-512 activation kernels: simd_kernels.h's maths on 16 floats, the remainder on 8 (AVX2) and then
// one at a time, exactly as the AVX2 kernels do each element. Compiled for AVX-512F by the target pragma
// below, placed after every standard header so that no standard-library code in this file is built for
// AVX-512 (the linker could otherwise keep that copy for the whole program, also on AVX2-only CPUs).
#include "engine/kernels_avx512.h"

#include <cstdint>

#if defined(__clang__)  // the fuzz build (scripts/fuzz.sh)
#pragma clang attribute push(__attribute__((target("avx2,fma,avx512f"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f")
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() and warn about it (a known false positive).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "engine/simd_kernels.h"

namespace blocklab {
namespace {
namespace simd {

// 16 floats (AVX-512F only: the bitwise operations go through the integer forms, which need no AVX-512DQ).
struct Avx512 {
  using F = __m512;
  using Mask = __mmask16;
  static constexpr int64_t width = 16;
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static F set1(float x) { return _mm512_set1_ps(x); }
  static F zero() { return _mm512_setzero_ps(); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
  static F min(F a, F b) { return _mm512_min_ps(a, b); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static F floor(F a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static F sqrt(F a) { return _mm512_sqrt_ps(a); }
  static F abs(F a) {
    return _mm512_castsi512_ps(_mm512_and_epi32(_mm512_castps_si512(a), _mm512_set1_epi32(0x7fffffff)));
  }
  static F with_sign_of(F magnitude, F x) {
    const __m512i sign = _mm512_and_epi32(_mm512_castps_si512(x), _mm512_set1_epi32(int32_t(0x80000000u)));
    return _mm512_castsi512_ps(_mm512_or_epi32(_mm512_castps_si512(magnitude), sign));
  }
  static F pow2(F n) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23));
  }
  static Mask less_than_zero(F a) { return _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_LT_OQ); }
  static Mask greater_than_zero(F a) { return _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GT_OQ); }
  static F select(Mask m, F if_false, F if_true) { return _mm512_mask_blend_ps(m, if_false, if_true); }
};

}  // namespace simd
}  // namespace

namespace avx512 {

using simd::Avx2;
using simd::Avx512;

void relu_forward(float* out, const float* inp, int64_t n) { simd::map<simd::Relu, Avx512, Avx2>(out, inp, n); }
void relu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  simd::map_grad<simd::Relu, Avx512, Avx2>(dinp, inp, dout, n);
}
void gelu_forward(float* out, const float* inp, int64_t n) { simd::map<simd::Gelu, Avx512, Avx2>(out, inp, n); }
void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  simd::map_grad<simd::Gelu, Avx512, Avx2>(dinp, inp, dout, n);
}
void gelu_tanh_forward(float* out, const float* inp, int64_t n) {
  simd::map<simd::GeluTanh, Avx512, Avx2>(out, inp, n);
}
void gelu_tanh_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  simd::map_grad<simd::GeluTanh, Avx512, Avx2>(dinp, inp, dout, n);
}

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float decay, float b1, float b2,
                  float eps, float step_size, float inv_sqrt_bias2) {
  simd::adamw<Avx512, Avx2>(param, grad, m, v, n, {decay, b1, b2, eps, step_size, inv_sqrt_bias2});
}

}  // namespace avx512
}  // namespace blocklab

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

namespace blocklab::avx512 {

bool available() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
                         __builtin_cpu_supports("fma");
  return ok;
}

}  // namespace blocklab::avx512
