// AVX2 + FMA float32 kernels. Compiled with -mavx2 -mfma; called only when avx2::available().
// Rows are processed 8 floats at a time with a scalar tail; the math per element is the portable
// kernels' (kernels.cpp), with exp, tanh and erf evaluated by the vector approximations below
// (about 1e-7 absolute error, inside float32's own rounding for these uses). Large inputs are split
// over threads (OpenMP); small ones stay on the calling thread.
#include "engine/kernels_avx2.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace blocklab::avx2 {

namespace {

// A row whose float32 sum of squares exceeds this takes the float64 path in the norms: past it the
// squares (|x| > 1.8e19) or x - mean could overflow float32, and no ordinary activation is that large.
constexpr double kMaxFloatSumSq = 1e30;

// Work below this many elements stays on the calling thread: a thread hand-off costs more.
constexpr int64_t kParallelElements = 1 << 16;

inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 0x55));
  return _mm_cvtss_f32(lo);
}

// exp(x), Cephes' single-precision method: x = n ln2 + r, a degree-5 polynomial for e^r, 2^n from the
// exponent bits. Inputs are clamped to [-87.3, 88.4] (no overflow to inf, no denormals).
inline __m256 exp_ps(__m256 x) {
  x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3365447505531f));
  __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
  fx = _mm256_floor_ps(fx);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(n));
}

// With t = tanh(u): 1 + t and 1 - t^2, without cancellation anywhere. q = 1 - tanh|u| = 2e / (1 + e) with
// e = exp(-2|u|) <= 1; then 1 + t = 2 - q for u >= 0, q for u < 0; and 1 - t^2 = q (2 - q).
inline void tanh_parts(__m256 u, __m256* one_plus_t, __m256* one_minus_t2) {
  const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), u);
  const __m256 e = exp_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), a));
  const __m256 q = _mm256_div_ps(_mm256_add_ps(e, e), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
  const __m256 two_minus_q = _mm256_sub_ps(_mm256_set1_ps(2.0f), q);
  const __m256 negative = _mm256_cmp_ps(u, _mm256_setzero_ps(), _CMP_LT_OQ);
  *one_plus_t = _mm256_blendv_ps(two_minus_q, q, negative);
  if (one_minus_t2) *one_minus_t2 = _mm256_mul_ps(q, two_minus_q);
}

// erf(x): Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7.
inline __m256 erf_ps(__m256 x) {
  const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
  const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(a, _mm256_set1_ps(0.3275911f), _mm256_set1_ps(1.0f)));
  __m256 p = _mm256_set1_ps(1.061405429f);
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
  p = _mm256_mul_ps(p, t);
  const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(a, a)));
  const __m256 r = _mm256_fnmadd_ps(p, e, _mm256_set1_ps(1.0f));
  return _mm256_or_ps(r, sign);
}

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kInvSqrt2 = 0.7071067811865476f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;
constexpr float kCoeff = 0.044715f;

// Runs body(begin, end) over [0, n) in chunks of `grain`, across threads when n * cost is large.
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

}  // namespace

bool available() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

// ---- LayerNorm -----------------------------------------------------------------------------------

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int64_t N, int64_t C, float eps) {
  parallel_rows(N, N * C, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const float* x = inp + n * C;
      // One pass for both statistics, on values shifted by the row's first element (var is shift-free,
      // and the shift keeps E[d^2] - E[d]^2 from cancelling when the mean is large next to the spread).
      const float shift = x[0];
      const __m256 vshift = _mm256_set1_ps(shift);
      __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), q0 = _mm256_setzero_ps(), q1 = _mm256_setzero_ps();
      int64_t c = 0;
      for (; c + 16 <= C; c += 16) {
        const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + c), vshift), d1 = _mm256_sub_ps(_mm256_loadu_ps(x + c + 8), vshift);
        s0 = _mm256_add_ps(s0, d0);
        s1 = _mm256_add_ps(s1, d1);
        q0 = _mm256_fmadd_ps(d0, d0, q0);
        q1 = _mm256_fmadd_ps(d1, d1, q1);
      }
      for (; c + 8 <= C; c += 8) {
        const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + c), vshift);
        s0 = _mm256_add_ps(s0, d0);
        q0 = _mm256_fmadd_ps(d0, d0, q0);
      }
      double sum = hsum(_mm256_add_ps(s0, s1)), sq = hsum(_mm256_add_ps(q0, q1));
      for (; c < C; ++c) {
        const double d = double(x[c]) - shift;
        sum += d;
        sq += d * d;
      }
      float* y = out + n * C;
      if (!(sq <= kMaxFloatSumSq)) {
        // Values more than ~1e15 from x[0]: the float32 sums (and x - mean below) could overflow, so this
        // row is computed in float64 as the portable kernel does (ordinary rows never get here).
        double s = 0, q = 0;
        for (int64_t k = 0; k < C; ++k) s += x[k];
        const double mu_d = s / double(C);
        for (int64_t k = 0; k < C; ++k) q += (x[k] - mu_d) * (x[k] - mu_d);
        const double rs_d = 1.0 / std::sqrt(q / double(C) + double(eps));
        for (int64_t k = 0; k < C; ++k) y[k] = float((x[k] - mu_d) * rs_d) * weight[k] + bias[k];
        mean[n] = float(mu_d);
        rstd[n] = float(rs_d);
        continue;
      }
      const double mean_d = sum / double(C);
      const double var = std::max(0.0, sq / double(C) - mean_d * mean_d);
      const float mu = float(shift + mean_d);
      const __m256 vmu = _mm256_set1_ps(mu);
      const float rs = float(1.0 / std::sqrt(var + double(eps)));
      const __m256 vrs = _mm256_set1_ps(rs);
      c = 0;
      for (; c + 8 <= C; c += 8) {
        const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + c), vmu), vrs);
        _mm256_storeu_ps(y + c, _mm256_fmadd_ps(xhat, _mm256_loadu_ps(weight + c), _mm256_loadu_ps(bias + c)));
      }
      for (; c < C; ++c) y[c] = (x[c] - mu) * rs * weight[c] + bias[c];
      mean[n] = mu;
      rstd[n] = rs;
    }
  });
}

namespace {

// Adds each thread's dweight / dbias rows at the end (they cannot be shared while rows run).
struct ColumnSums {
  std::vector<float> dw, db;
  explicit ColumnSums(int64_t C) : dw(size_t(C), 0.f), db(size_t(C), 0.f) {}
};

}  // namespace

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C) {
  auto rows = [&](int64_t begin, int64_t end, float* dw, float* db) {
    for (int64_t n = begin; n < end; ++n) {
      const float* dy = dout + n * C;
      const float* x = inp + n * C;
      const __m256 vmu = _mm256_set1_ps(mean[n]), vrs = _mm256_set1_ps(rstd[n]);
      // dxhat = dy * w ; sums of dxhat and dxhat * xhat ; dW += dy * xhat ; db += dy
      __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
      int64_t c = 0;
      for (; c + 8 <= C; c += 8) {
        const __m256 vdy = _mm256_loadu_ps(dy + c);
        const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + c), vmu), vrs);
        const __m256 dxhat = _mm256_mul_ps(vdy, _mm256_loadu_ps(weight + c));
        a = _mm256_add_ps(a, dxhat);
        b = _mm256_fmadd_ps(dxhat, xhat, b);
        if (dw) _mm256_storeu_ps(dw + c, _mm256_fmadd_ps(vdy, xhat, _mm256_loadu_ps(dw + c)));
        if (db) _mm256_storeu_ps(db + c, _mm256_add_ps(vdy, _mm256_loadu_ps(db + c)));
      }
      float sa = hsum(a), sb = hsum(b);
      for (; c < C; ++c) {
        const float xhat = (x[c] - mean[n]) * rstd[n], dxhat = dy[c] * weight[c];
        sa += dxhat;
        sb += dxhat * xhat;
        if (dw) dw[c] += dy[c] * xhat;
        if (db) db[c] += dy[c];
      }
      if (!dinp) continue;
      const float ma = sa / float(C), mb = sb / float(C);
      const __m256 vma = _mm256_set1_ps(ma), vmb = _mm256_set1_ps(mb);
      float* dx = dinp + n * C;
      c = 0;
      for (; c + 8 <= C; c += 8) {
        const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + c), vmu), vrs);
        const __m256 dxhat = _mm256_mul_ps(_mm256_loadu_ps(dy + c), _mm256_loadu_ps(weight + c));
        const __m256 g = _mm256_mul_ps(vrs, _mm256_fnmadd_ps(xhat, vmb, _mm256_sub_ps(dxhat, vma)));
        _mm256_storeu_ps(dx + c, _mm256_add_ps(_mm256_loadu_ps(dx + c), g));
      }
      for (; c < C; ++c) {
        const float xhat = (x[c] - mean[n]) * rstd[n], dxhat = dy[c] * weight[c];
        dx[c] += rstd[n] * (dxhat - ma - xhat * mb);
      }
    }
  };
  if (N * C < kParallelElements || omp_get_max_threads() == 1) {
    rows(0, N, dweight, dbias);
    return;
  }
#pragma omp parallel
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    ColumnSums local(C);
    rows(N * t / nt, N * (t + 1) / nt, dweight ? local.dw.data() : nullptr, dbias ? local.db.data() : nullptr);
#pragma omp critical
    for (int64_t c = 0; c < C; ++c) {
      if (dweight) dweight[c] += local.dw[size_t(c)];
      if (dbias) dbias[c] += local.db[size_t(c)];
    }
  }
}

// ---- RMSNorm -------------------------------------------------------------------------------------

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C, float eps) {
  parallel_rows(N, N * C, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const float* x = inp + n * C;
      __m256 q0 = _mm256_setzero_ps(), q1 = _mm256_setzero_ps();
      int64_t c = 0;
      for (; c + 16 <= C; c += 16) {
        const __m256 a = _mm256_loadu_ps(x + c), b = _mm256_loadu_ps(x + c + 8);
        q0 = _mm256_fmadd_ps(a, a, q0);
        q1 = _mm256_fmadd_ps(b, b, q1);
      }
      for (; c + 8 <= C; c += 8) {
        const __m256 a = _mm256_loadu_ps(x + c);
        q0 = _mm256_fmadd_ps(a, a, q0);
      }
      float sq = hsum(_mm256_add_ps(q0, q1));
      for (; c < C; ++c) sq += x[c] * x[c];
      float* y = out + n * C;
      if (!(sq <= kMaxFloatSumSq)) {  // |x| beyond ~1e15: float32 squares could overflow; float64 for this row
        double q = 0;
        for (int64_t k = 0; k < C; ++k) q += double(x[k]) * x[k];
        const double rs_d = 1.0 / std::sqrt(q / double(C) + double(eps));
        for (int64_t k = 0; k < C; ++k) y[k] = float(x[k] * rs_d) * weight[k];
        rstd[n] = float(rs_d);
        continue;
      }
      const float rs = float(1.0 / std::sqrt(double(sq) / double(C) + double(eps)));
      const __m256 vrs = _mm256_set1_ps(rs);
      c = 0;
      for (; c + 8 <= C; c += 8)
        _mm256_storeu_ps(y + c, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + c), vrs), _mm256_loadu_ps(weight + c)));
      for (; c < C; ++c) y[c] = x[c] * rs * weight[c];
      rstd[n] = rs;
    }
  });
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int64_t N, int64_t C) {
  auto rows = [&](int64_t begin, int64_t end, float* dw) {
    for (int64_t n = begin; n < end; ++n) {
      const float* dy = dout + n * C;
      const float* x = inp + n * C;
      const __m256 vrs = _mm256_set1_ps(rstd[n]);
      __m256 b = _mm256_setzero_ps();
      int64_t c = 0;
      for (; c + 8 <= C; c += 8) {
        const __m256 vdy = _mm256_loadu_ps(dy + c);
        const __m256 xhat = _mm256_mul_ps(_mm256_loadu_ps(x + c), vrs);
        b = _mm256_fmadd_ps(_mm256_mul_ps(vdy, _mm256_loadu_ps(weight + c)), xhat, b);
        if (dw) _mm256_storeu_ps(dw + c, _mm256_fmadd_ps(vdy, xhat, _mm256_loadu_ps(dw + c)));
      }
      float sb = hsum(b);
      for (; c < C; ++c) {
        const float xhat = x[c] * rstd[n];
        sb += dy[c] * weight[c] * xhat;
        if (dw) dw[c] += dy[c] * xhat;
      }
      if (!dinp) continue;
      const float mb = sb / float(C);
      const __m256 vmb = _mm256_set1_ps(mb);
      float* dx = dinp + n * C;
      c = 0;
      for (; c + 8 <= C; c += 8) {
        const __m256 xhat = _mm256_mul_ps(_mm256_loadu_ps(x + c), vrs);
        const __m256 dxhat = _mm256_mul_ps(_mm256_loadu_ps(dy + c), _mm256_loadu_ps(weight + c));
        _mm256_storeu_ps(dx + c, _mm256_fmadd_ps(vrs, _mm256_fnmadd_ps(xhat, vmb, dxhat), _mm256_loadu_ps(dx + c)));
      }
      for (; c < C; ++c) dx[c] += rstd[n] * (dy[c] * weight[c] - x[c] * rstd[n] * mb);
    }
  };
  if (N * C < kParallelElements || omp_get_max_threads() == 1) {
    rows(0, N, dweight);
    return;
  }
#pragma omp parallel
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    ColumnSums local(C);
    rows(N * t / nt, N * (t + 1) / nt, dweight ? local.dw.data() : nullptr);
#pragma omp critical
    if (dweight)
      for (int64_t c = 0; c < C; ++c) dweight[c] += local.dw[size_t(c)];
  }
}

// ---- Activations ---------------------------------------------------------------------------------

namespace {

// out[i] = f(x[i]) for vectors of 8 and a scalar tail; split over threads when large.
template <typename Vec, typename Scalar>
void map(float* out, const float* in, int64_t n, Vec vf, Scalar sf) {
  parallel_rows((n + 7) / 8, n, [&](int64_t begin, int64_t end) {
    const int64_t stop = std::min(end * 8, n);
    int64_t i = begin * 8;
    for (; i + 8 <= stop; i += 8) _mm256_storeu_ps(out + i, vf(_mm256_loadu_ps(in + i)));
    for (; i < stop; ++i) out[i] = sf(in[i]);
  });
}

// dinp[i] += dout[i] * f'(x[i])
template <typename Vec, typename Scalar>
void map_grad(float* dinp, const float* in, const float* dout, int64_t n, Vec vf, Scalar sf) {
  parallel_rows((n + 7) / 8, n, [&](int64_t begin, int64_t end) {
    const int64_t stop = std::min(end * 8, n);
    int64_t i = begin * 8;
    for (; i + 8 <= stop; i += 8)
      _mm256_storeu_ps(dinp + i, _mm256_fmadd_ps(_mm256_loadu_ps(dout + i), vf(_mm256_loadu_ps(in + i)), _mm256_loadu_ps(dinp + i)));
    for (; i < stop; ++i) dinp[i] += dout[i] * sf(in[i]);
  });
}

// 1 + tanh(u) and 1 - tanh(u)^2, for the scalar tails.
void tanh_parts_scalar(float u, float* one_plus_t, float* one_minus_t2) {
  __m256 a, b;
  tanh_parts(_mm256_set1_ps(u), &a, &b);
  *one_plus_t = _mm256_cvtss_f32(a);
  *one_minus_t2 = _mm256_cvtss_f32(b);
}
float erf_scalar(float x) { return _mm256_cvtss_f32(erf_ps(_mm256_set1_ps(x))); }
float exp_scalar(float x) { return _mm256_cvtss_f32(exp_ps(_mm256_set1_ps(x))); }

}  // namespace

void relu_forward(float* out, const float* inp, int64_t n) {
  map(out, inp, n, [](__m256 x) { return _mm256_max_ps(x, _mm256_setzero_ps()); }, [](float x) { return x > 0 ? x : 0.f; });
}

void relu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  map_grad(
      dinp, inp, dout, n,
      [](__m256 x) { return _mm256_and_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ), _mm256_set1_ps(1.0f)); },
      [](float x) { return x > 0 ? 1.f : 0.f; });
}

// gelu(x) = 0.5 x (1 + erf(x / sqrt 2))
void gelu_forward(float* out, const float* inp, int64_t n) {
  map(
      out, inp, n,
      [](__m256 x) {
        const __m256 e = erf_ps(_mm256_mul_ps(x, _mm256_set1_ps(kInvSqrt2)));
        return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
      },
      [](float x) { return 0.5f * x * (1.0f + erf_scalar(x * kInvSqrt2)); });
}

// d/dx = Phi(x) + x phi(x)
void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  map_grad(
      dinp, inp, dout, n,
      [](__m256 x) {
        const __m256 cdf = _mm256_mul_ps(_mm256_set1_ps(0.5f),
                                         _mm256_add_ps(_mm256_set1_ps(1.0f), erf_ps(_mm256_mul_ps(x, _mm256_set1_ps(kInvSqrt2)))));
        const __m256 pdf = _mm256_mul_ps(_mm256_set1_ps(kInvSqrt2Pi),
                                         exp_ps(_mm256_mul_ps(_mm256_set1_ps(-0.5f), _mm256_mul_ps(x, x))));
        return _mm256_fmadd_ps(x, pdf, cdf);
      },
      [](float x) {
        return 0.5f * (1.0f + erf_scalar(x * kInvSqrt2)) + x * kInvSqrt2Pi * exp_scalar(-0.5f * x * x);
      });
}

// gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
void gelu_tanh_forward(float* out, const float* inp, int64_t n) {
  map(
      out, inp, n,
      [](__m256 x) {
        const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
        const __m256 u = _mm256_mul_ps(_mm256_set1_ps(kSqrt2OverPi), _mm256_fmadd_ps(_mm256_set1_ps(kCoeff), x3, x));
        __m256 one_plus_t;
        tanh_parts(u, &one_plus_t, nullptr);
        return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), one_plus_t);
      },
      [](float x) {
        float one_plus_t, unused;
        tanh_parts_scalar(kSqrt2OverPi * (x + kCoeff * x * x * x), &one_plus_t, &unused);
        return 0.5f * x * one_plus_t;
      });
}

// d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 c x^2)
void gelu_tanh_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  map_grad(
      dinp, inp, dout, n,
      [](__m256 x) {
        const __m256 x2 = _mm256_mul_ps(x, x);
        const __m256 u = _mm256_mul_ps(_mm256_set1_ps(kSqrt2OverPi), _mm256_fmadd_ps(_mm256_set1_ps(kCoeff), _mm256_mul_ps(x2, x), x));
        __m256 one_plus_t, one_minus_t2;
        tanh_parts(u, &one_plus_t, &one_minus_t2);
        const __m256 du = _mm256_mul_ps(_mm256_set1_ps(kSqrt2OverPi), _mm256_fmadd_ps(_mm256_set1_ps(3 * kCoeff), x2, _mm256_set1_ps(1.0f)));
        const __m256 half = _mm256_set1_ps(0.5f);
        const __m256 left = _mm256_mul_ps(half, one_plus_t);
        const __m256 right = _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_mul_ps(one_minus_t2, du));
        return _mm256_add_ps(left, right);
      },
      [](float x) {
        float one_plus_t, one_minus_t2;
        tanh_parts_scalar(kSqrt2OverPi * (x + kCoeff * x * x * x), &one_plus_t, &one_minus_t2);
        const float du = kSqrt2OverPi * (1.0f + 3 * kCoeff * x * x);
        return 0.5f * one_plus_t + 0.5f * x * one_minus_t2 * du;
      });
}

// ---- Softmax -------------------------------------------------------------------------------------

void softmax_forward(float* out, const float* inp, int64_t N, int64_t C) {
  for (int64_t n = 0; n < N; ++n) {
    const float* x = inp + n * C;
    float* y = out + n * C;
    float mx = -INFINITY;
    for (int64_t c = 0; c < C; ++c) mx = std::max(mx, x[c]);
    if (mx == -INFINITY) {
      std::fill(y, y + C, 0.f);
      continue;
    }
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 s = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 8 <= C; c += 8) {
      // exp of -inf (a masked score) clamps to exp(-87.3) = 1e-38: make it exactly 0.
      const __m256 xi = _mm256_loadu_ps(x + c);
      const __m256 e = _mm256_and_ps(exp_ps(_mm256_sub_ps(xi, vmx)), _mm256_cmp_ps(xi, _mm256_set1_ps(-INFINITY), _CMP_NEQ_OQ));
      _mm256_storeu_ps(y + c, e);
      s = _mm256_add_ps(s, e);
    }
    float sum = hsum(s);
    for (; c < C; ++c) {
      y[c] = x[c] == -INFINITY ? 0.f : exp_scalar(x[c] - mx);
      sum += y[c];
    }
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    c = 0;
    for (; c + 8 <= C; c += 8) _mm256_storeu_ps(y + c, _mm256_mul_ps(_mm256_loadu_ps(y + c), inv));
    for (; c < C; ++c) y[c] *= 1.0f / sum;
  }
}

}  // namespace blocklab::avx2
