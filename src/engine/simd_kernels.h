// The elementwise kernels' vector maths (exp, tanh, erf, GELU in both forms, ReLU, the AdamW update), written once over a
// vector type V and compiled by each ISA's file: kernels_avx2.cpp (V = Avx2, 8 floats) and
// kernels_avx512.cpp (V = Avx512, 16 floats, its tail through Avx2). Every lane runs the same operations in
// the same order on every width, and scalar tails run the vector code on a broadcast value, so the AVX-512
// and AVX2 kernels give the same bits for every element (kernels_test checks it). Internal header.
//
// Everything here has internal linkage (an unnamed namespace): each file compiles it for its own ISA, and
// the linker must never merge an AVX-512 copy into the AVX2 build of a function.
#pragma once

#include <immintrin.h>
#include <omp.h>

#include <cstdint>

namespace blocklab {
namespace {
namespace simd {

// Work below this many elements stays on the calling thread: a thread hand-off costs more.
constexpr int64_t kParallelElements = 1 << 16;

// Runs body(begin, end) over [0, n) split evenly across the threads when `elements` is large.
template <typename F>
void parallel_rows(int64_t n, int64_t elements, F&& body) {
  if (elements < kParallelElements || omp_get_max_threads() == 1) {
    body(int64_t(0), n);
    return;
  }
#pragma omp parallel
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
    if (begin < end) body(begin, end);
  }
}

// 8 floats (AVX2 + FMA).
struct Avx2 {
  using F = __m256;
  using Mask = __m256;
  static constexpr int64_t width = 8;
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static F set1(float x) { return _mm256_set1_ps(x); }
  static F zero() { return _mm256_setzero_ps(); }
  static float first(F v) { return _mm256_cvtss_f32(v); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }   // a b + c
  static F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }  // c - a b
  static F min(F a, F b) { return _mm256_min_ps(a, b); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static F floor(F a) { return _mm256_floor_ps(a); }
  static F sqrt(F a) { return _mm256_sqrt_ps(a); }
  static F abs(F a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static F with_sign_of(F magnitude, F x) { return _mm256_or_ps(magnitude, _mm256_and_ps(x, _mm256_set1_ps(-0.0f))); }
  // 2^n for whole-valued n in float's exponent range, from the exponent bits.
  static F pow2(F n) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23));
  }
  static Mask less_than_zero(F a) { return _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_LT_OQ); }
  static Mask greater_than_zero(F a) { return _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_GT_OQ); }
  static F select(Mask m, F if_false, F if_true) { return _mm256_blendv_ps(if_false, if_true, m); }
};

// exp(x), Cephes' single-precision method: x = n ln2 + r, a degree-5 polynomial for e^r, 2^n from the
// exponent bits. Inputs are clamped to [-87.3, 88.4] (no overflow to inf, no denormals).
template <typename V>
typename V::F exp(typename V::F x) {
  x = V::min(x, V::set1(88.3762626647949f));
  x = V::max(x, V::set1(-87.3365447505531f));
  typename V::F fx = V::floor(V::fmadd(x, V::set1(1.44269504088896341f), V::set1(0.5f)));
  x = V::fnmadd(fx, V::set1(0.693359375f), x);
  x = V::fnmadd(fx, V::set1(-2.12194440e-4f), x);
  typename V::F y = V::set1(1.9875691500E-4f);
  y = V::fmadd(y, x, V::set1(1.3981999507E-3f));
  y = V::fmadd(y, x, V::set1(8.3334519073E-3f));
  y = V::fmadd(y, x, V::set1(4.1665795894E-2f));
  y = V::fmadd(y, x, V::set1(1.6666665459E-1f));
  y = V::fmadd(y, x, V::set1(5.0000001201E-1f));
  y = V::fmadd(y, V::mul(x, x), V::add(x, V::set1(1.0f)));
  return V::mul(y, V::pow2(fx));
}

// With t = tanh(u): 1 + t and 1 - t^2, without cancellation anywhere. q = 1 - tanh|u| = 2e / (1 + e) with
// e = exp(-2|u|) <= 1; then 1 + t = 2 - q for u >= 0, q for u < 0; and 1 - t^2 = q (2 - q).
template <typename V>
void tanh_parts(typename V::F u, typename V::F* one_plus_t, typename V::F* one_minus_t2) {
  const typename V::F e = exp<V>(V::mul(V::set1(-2.0f), V::abs(u)));
  const typename V::F q = V::div(V::add(e, e), V::add(V::set1(1.0f), e));
  const typename V::F two_minus_q = V::sub(V::set1(2.0f), q);
  *one_plus_t = V::select(V::less_than_zero(u), two_minus_q, q);
  if (one_minus_t2) *one_minus_t2 = V::mul(q, two_minus_q);
}

// erf(x): Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7.
template <typename V>
typename V::F erf(typename V::F x) {
  const typename V::F a = V::abs(x);
  const typename V::F t = V::div(V::set1(1.0f), V::fmadd(a, V::set1(0.3275911f), V::set1(1.0f)));
  typename V::F p = V::set1(1.061405429f);
  p = V::fmadd(p, t, V::set1(-1.453152027f));
  p = V::fmadd(p, t, V::set1(1.421413741f));
  p = V::fmadd(p, t, V::set1(-0.284496736f));
  p = V::fmadd(p, t, V::set1(0.254829592f));
  p = V::mul(p, t);
  const typename V::F e = exp<V>(V::sub(V::zero(), V::mul(a, a)));
  return V::with_sign_of(V::fnmadd(p, e, V::set1(1.0f)), x);
}

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kInvSqrt2 = 0.7071067811865476f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;
constexpr float kCoeff = 0.044715f;

// Each activation as f (forward value) and df (derivative), on a vector of any width.
struct Relu {
  template <typename V> static typename V::F f(typename V::F x) { return V::max(x, V::zero()); }
  template <typename V> static typename V::F df(typename V::F x) {
    return V::select(V::greater_than_zero(x), V::zero(), V::set1(1.0f));
  }
};

// gelu(x) = 0.5 x (1 + erf(x / sqrt 2)); d/dx = Phi(x) + x phi(x)
struct Gelu {
  template <typename V> static typename V::F f(typename V::F x) {
    const typename V::F e = erf<V>(V::mul(x, V::set1(kInvSqrt2)));
    return V::mul(V::mul(V::set1(0.5f), x), V::add(V::set1(1.0f), e));
  }
  template <typename V> static typename V::F df(typename V::F x) {
    const typename V::F cdf = V::mul(V::set1(0.5f), V::add(V::set1(1.0f), erf<V>(V::mul(x, V::set1(kInvSqrt2)))));
    const typename V::F pdf = V::mul(V::set1(kInvSqrt2Pi), exp<V>(V::mul(V::set1(-0.5f), V::mul(x, x))));
    return V::fmadd(x, pdf, cdf);
  }
};

// gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)));
// d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 c x^2)
struct GeluTanh {
  template <typename V> static typename V::F f(typename V::F x) {
    const typename V::F x3 = V::mul(V::mul(x, x), x);
    const typename V::F u = V::mul(V::set1(kSqrt2OverPi), V::fmadd(V::set1(kCoeff), x3, x));
    typename V::F one_plus_t;
    tanh_parts<V>(u, &one_plus_t, nullptr);
    return V::mul(V::mul(V::set1(0.5f), x), one_plus_t);
  }
  template <typename V> static typename V::F df(typename V::F x) {
    const typename V::F x2 = V::mul(x, x);
    const typename V::F u = V::mul(V::set1(kSqrt2OverPi), V::fmadd(V::set1(kCoeff), V::mul(x2, x), x));
    typename V::F one_plus_t, one_minus_t2;
    tanh_parts<V>(u, &one_plus_t, &one_minus_t2);
    const typename V::F du = V::mul(V::set1(kSqrt2OverPi), V::fmadd(V::set1(3 * kCoeff), x2, V::set1(1.0f)));
    const typename V::F half = V::set1(0.5f);
    return V::add(V::mul(half, one_plus_t), V::mul(V::mul(half, x), V::mul(one_minus_t2, du)));
  }
};

// out[i] = Act::f(x[i]) over [begin, end): vectors of V, then of each narrower type in Tails (e.g. Avx2
// after Avx512), then single values through the narrowest vector (a broadcast), so every element takes
// exactly the same operations whatever its position.
template <typename Act, typename V, typename... Tails>
void map_range(float* out, const float* in, int64_t i, int64_t stop) {
  for (; i + V::width <= stop; i += V::width) V::store(out + i, Act::template f<V>(V::load(in + i)));
  if constexpr (sizeof...(Tails) > 0) {
    map_range<Act, Tails...>(out, in, i, stop);
  } else {
    for (; i < stop; ++i) out[i] = V::first(Act::template f<V>(V::set1(in[i])));
  }
}

// dinp[i] += dout[i] * Act::df(x[i]) over [begin, end), as map_range.
template <typename Act, typename V, typename... Tails>
void map_grad_range(float* dinp, const float* in, const float* dout, int64_t i, int64_t stop) {
  for (; i + V::width <= stop; i += V::width)
    V::store(dinp + i, V::fmadd(V::load(dout + i), Act::template df<V>(V::load(in + i)), V::load(dinp + i)));
  if constexpr (sizeof...(Tails) > 0) {
    map_grad_range<Act, Tails...>(dinp, in, dout, i, stop);
  } else {
    for (; i < stop; ++i) dinp[i] += dout[i] * V::first(Act::template df<V>(V::set1(in[i])));
  }
}

// The whole array, split over threads in chunks of whole vectors of the widest type.
template <typename Act, typename V, typename... Tails>
void map(float* out, const float* in, int64_t n) {
  parallel_rows((n + V::width - 1) / V::width, n, [&](int64_t begin, int64_t end) {
    const int64_t stop = end * V::width < n ? end * V::width : n;
    map_range<Act, V, Tails...>(out, in, begin * V::width, stop);
  });
}

template <typename Act, typename V, typename... Tails>
void map_grad(float* dinp, const float* in, const float* dout, int64_t n) {
  parallel_rows((n + V::width - 1) / V::width, n, [&](int64_t begin, int64_t end) {
    const int64_t stop = end * V::width < n ? end * V::width : n;
    map_grad_range<Act, V, Tails...>(dinp, in, dout, begin * V::width, stop);
  });
}

// One AdamW step over [0, n), as kernels.cpp's portable loop: decay the parameter, update both moments, step.
// The scalars are the step's (bias corrections folded in by the caller).
struct AdamScalars {
  float decay, b1, b2, eps, step_size, inv_sqrt_bias2;
};

template <typename V>
void adamw_vectors(float* p, const float* g, float* m, float* v, int64_t i, int64_t stop, const AdamScalars& a) {
  const typename V::F decay = V::set1(a.decay), b1 = V::set1(a.b1), c1 = V::set1(1.0f - a.b1), b2 = V::set1(a.b2),
                      c2 = V::set1(1.0f - a.b2), eps = V::set1(a.eps), step = V::set1(a.step_size),
                      inv = V::set1(a.inv_sqrt_bias2);
  for (; i + V::width <= stop; i += V::width) {
    const typename V::F gi = V::load(g + i);
    const typename V::F mi = V::add(V::mul(b1, V::load(m + i)), V::mul(c1, gi));
    const typename V::F vi = V::add(V::mul(b2, V::load(v + i)), V::mul(V::mul(c2, gi), gi));
    const typename V::F pi = V::mul(V::load(p + i), decay);
    V::store(m + i, mi);
    V::store(v + i, vi);
    V::store(p + i, V::sub(pi, V::div(V::mul(step, mi), V::add(V::mul(V::sqrt(vi), inv), eps))));
  }
}

// Vectors of V, then of each narrower type in Tails, then single values through the narrowest (as map_range).
template <typename V, typename... Tails>
void adamw_range(float* p, const float* g, float* m, float* v, int64_t i, int64_t stop, const AdamScalars& a) {
  adamw_vectors<V>(p, g, m, v, i, stop, a);
  const int64_t done = i + (stop - i) / V::width * V::width;
  if constexpr (sizeof...(Tails) > 0) {
    adamw_range<Tails...>(p, g, m, v, done, stop, a);
  } else {
    for (int64_t j = done; j < stop; ++j) {  // one value in lane 0 of a vector: the same operations
      float pj = p[j], gj = g[j], mj = m[j], vj = v[j];
      alignas(64) float pb[V::width] = {pj}, gb[V::width] = {gj}, mb[V::width] = {mj}, vb[V::width] = {vj};
      adamw_vectors<V>(pb, gb, mb, vb, 0, V::width, a);
      p[j] = pb[0];
      m[j] = mb[0];
      v[j] = vb[0];
    }
  }
}

template <typename V, typename... Tails>
void adamw(float* p, const float* g, float* m, float* v, int64_t n, const AdamScalars& a) {
  parallel_rows((n + V::width - 1) / V::width, n, [&](int64_t begin, int64_t end) {
    const int64_t stop = end * V::width < n ? end * V::width : n;
    adamw_range<V, Tails...>(p, g, m, v, begin * V::width, stop, a);
  });
}

}  // namespace simd
}  // namespace
}  // namespace blocklab
