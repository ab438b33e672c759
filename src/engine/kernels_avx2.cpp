// AVX2 + FMA float32 kernels. Compiled with -mavx2 -mfma; called only when avx2::available().
// Rows are processed 8 floats at a time with a scalar tail; the math per element is the portable
// kernels' (kernels.cpp), with exp, tanh and erf evaluated by the vector approximations below
// (about 1e-7 absolute error, inside float32's own rounding for these uses). Large inputs are split
// over threads (OpenMP); small ones stay on the calling thread. The activations' maths is shared with the
// AVX-512 file (simd_kernels.h).
#include "engine/kernels_avx2.h"

#include "engine/simd_kernels.h"

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

inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 0x55));
  return _mm_cvtss_f32(lo);
}

using simd::Avx2;
using simd::kParallelElements;
using simd::parallel_rows;

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

// ---- Activations: the shared vector maths (simd_kernels.h) on 8 floats -------------------------

void relu_forward(float* out, const float* inp, int64_t n) { simd::map<simd::Relu, Avx2>(out, inp, n); }
void relu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  simd::map_grad<simd::Relu, Avx2>(dinp, inp, dout, n);
}
void gelu_forward(float* out, const float* inp, int64_t n) { simd::map<simd::Gelu, Avx2>(out, inp, n); }
void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  simd::map_grad<simd::Gelu, Avx2>(dinp, inp, dout, n);
}
void gelu_tanh_forward(float* out, const float* inp, int64_t n) { simd::map<simd::GeluTanh, Avx2>(out, inp, n); }
void gelu_tanh_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  simd::map_grad<simd::GeluTanh, Avx2>(dinp, inp, dout, n);
}

// ---- AdamW: the shared vector maths on 8 floats -----------------------------------------------------

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float decay, float b1, float b2,
                  float eps, float step_size, float inv_sqrt_bias2) {
  simd::adamw<Avx2>(param, grad, m, v, n, {decay, b1, b2, eps, step_size, inv_sqrt_bias2});
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
      const __m256 e = _mm256_and_ps(simd::exp<Avx2>(_mm256_sub_ps(xi, vmx)), _mm256_cmp_ps(xi, _mm256_set1_ps(-INFINITY), _CMP_NEQ_OQ));
      _mm256_storeu_ps(y + c, e);
      s = _mm256_add_ps(s, e);
    }
    float sum = hsum(s);
    for (; c < C; ++c) {
      y[c] = x[c] == -INFINITY ? 0.f : Avx2::first(simd::exp<Avx2>(Avx2::set1(x[c] - mx)));
      sum += y[c];
    }
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    c = 0;
    for (; c + 8 <= C; c += 8) _mm256_storeu_ps(y + c, _mm256_mul_ps(_mm256_loadu_ps(y + c), inv));
    for (; c < C; ++c) y[c] *= 1.0f / sum;
  }
}

}  // namespace blocklab::avx2
