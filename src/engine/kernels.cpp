#include "engine/kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include <omp.h>

#include "engine/blas.h"
#include "engine/kernels_avx2.h"
#include "engine/kernels_avx512.h"
#include "engine/rng.h"

namespace blocklab {

// ---- Linear ----------------------------------------------------------------------------------

// [web:linear-forward begin]
template <typename T>
void linear_forward(T* out, const T* inp, const T* weight, const T* bias, int64_t N, int64_t IC, int64_t OC) {
  // out = inp W^T (+ b): bias first, then the GEMM accumulates onto it.
  if (bias) {
    for (int64_t n = 0; n < N; ++n) std::copy(bias, bias + OC, out + n * OC);
  }
  gemm<T>(false, true, N, OC, IC, T(1), inp, IC, weight, IC, bias ? T(1) : T(0), out, OC);
}
// [web:linear-forward end]

template <typename T>
void linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, int64_t N,
                     int64_t IC, int64_t OC, bool accumulate_weight) {
  // dinp += dout W ; dW += dout^T inp ; db += sum_n dout
  if (dinp) gemm<T>(false, false, N, IC, OC, T(1), dout, OC, weight, IC, T(1), dinp, IC);
  if (dweight) gemm<T>(true, false, OC, IC, N, T(1), dout, OC, inp, IC, accumulate_weight ? T(1) : T(0), dweight, IC);
  if (dbias) {
    for (int64_t n = 0; n < N; ++n) {
      const T* row = dout + n * OC;
      for (int64_t o = 0; o < OC; ++o) dbias[o] += row[o];
    }
  }
}

// ---- The portable versions of the dispatched kernels ----------------------------------------------

namespace portable {

template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias, int64_t N, int64_t C,
                       double eps) {
  for (int64_t n = 0; n < N; ++n) {
    const T* x = inp + n * C;
    // Accumulate in double: the statistics are what the seed pages show to four digits.
    double sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += x[c];
    const double mu = sum / double(C);
    double sq = 0;
    for (int64_t c = 0; c < C; ++c) sq += (x[c] - mu) * (x[c] - mu);
    const double var = sq / double(C);  // biased, as PyTorch
    const double rs = 1.0 / std::sqrt(var + eps);
    T* y = out + n * C;
    for (int64_t c = 0; c < C; ++c) y[c] = T((x[c] - mu) * rs) * weight[c] + bias[c];
    mean[n] = T(mu);
    rstd[n] = T(rs);
  }
}

template <typename T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, const T* mean,
                        const T* rstd, int64_t N, int64_t C) {
  // xhat = (x - mean) * rstd ; dxhat = dout * w ; dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
  for (int64_t n = 0; n < N; ++n) {
    const T* dy = dout + n * C;
    const T* x = inp + n * C;
    double mean_dxhat = 0, mean_dxhat_xhat = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double xhat = (double(x[c]) - mean[n]) * rstd[n], dxhat = double(dy[c]) * weight[c];
      mean_dxhat += dxhat;
      mean_dxhat_xhat += dxhat * xhat;
    }
    mean_dxhat /= double(C);
    mean_dxhat_xhat /= double(C);
    for (int64_t c = 0; c < C; ++c) {
      const double xhat = (double(x[c]) - mean[n]) * rstd[n];
      if (dbias) dbias[c] += dy[c];
      if (dweight) dweight[c] += T(dy[c] * xhat);
      if (dinp) {
        const double dxhat = double(dy[c]) * weight[c];
        dinp[n * C + c] += T(rstd[n] * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat));
      }
    }
  }
}

template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int64_t N, int64_t C, double eps) {
  for (int64_t n = 0; n < N; ++n) {
    const T* x = inp + n * C;
    double sq = 0;
    for (int64_t c = 0; c < C; ++c) sq += double(x[c]) * x[c];
    const double rs = 1.0 / std::sqrt(sq / double(C) + eps);
    T* y = out + n * C;
    for (int64_t c = 0; c < C; ++c) y[c] = T(x[c] * rs) * weight[c];
    rstd[n] = T(rs);
  }
}

template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const T* rstd, int64_t N,
                      int64_t C) {
  // xhat = x * rstd ; dxhat = dout * w ; dx = rstd * (dxhat - xhat * mean(dxhat * xhat))
  for (int64_t n = 0; n < N; ++n) {
    const T* dy = dout + n * C;
    const T* x = inp + n * C;
    double mean_dxhat_xhat = 0;
    for (int64_t c = 0; c < C; ++c) mean_dxhat_xhat += double(dy[c]) * weight[c] * x[c] * rstd[n];
    mean_dxhat_xhat /= double(C);
    for (int64_t c = 0; c < C; ++c) {
      const double xhat = double(x[c]) * rstd[n];
      if (dweight) dweight[c] += T(dy[c] * xhat);
      if (dinp) {
        const double dxhat = double(dy[c]) * weight[c];
        dinp[n * C + c] += T(rstd[n] * (dxhat - xhat * mean_dxhat_xhat));
      }
    }
  }
}

namespace {
constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2/pi)
constexpr double kInvSqrt2 = 0.70710678118654752440;     // 1/sqrt(2)
constexpr double kInvSqrt2Pi = 0.39894228040143267794;   // 1/sqrt(2 pi)
constexpr double kGeluTanhCoeff = 0.044715;
}  // namespace

// [web:activation-forward begin]
template <typename T>
void activation_forward(Activation act, T* out, const T* inp, int64_t n) {
  switch (act) {
    case Activation::relu:
      for (int64_t i = 0; i < n; ++i) out[i] = inp[i] > T(0) ? inp[i] : T(0);
      break;
    case Activation::gelu:
      for (int64_t i = 0; i < n; ++i) {
        const T x = inp[i];
        out[i] = T(0.5) * x * (T(1) + std::erf(x * T(kInvSqrt2)));
      }
      break;
    case Activation::gelu_tanh:
      for (int64_t i = 0; i < n; ++i) {
        const T x = inp[i];
        const T u = T(kSqrt2OverPi) * (x + T(kGeluTanhCoeff) * x * x * x);
        out[i] = T(0.5) * x * (T(1) + std::tanh(u));
      }
      break;
  }
}
// [web:activation-forward end]

template <typename T>
void activation_backward(Activation act, T* dinp, const T* inp, const T* dout, int64_t n) {
  switch (act) {
    case Activation::relu:  // d/dx = 1 for x > 0, else 0 (PyTorch's choice at 0)
      for (int64_t i = 0; i < n; ++i) dinp[i] += inp[i] > T(0) ? dout[i] : T(0);
      break;
    case Activation::gelu:  // d/dx = Phi(x) + x phi(x)
      for (int64_t i = 0; i < n; ++i) {
        const T x = inp[i];
        const T cdf = T(0.5) * (T(1) + std::erf(x * T(kInvSqrt2)));
        const T pdf = T(kInvSqrt2Pi) * std::exp(T(-0.5) * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
      }
      break;
    case Activation::gelu_tanh:  // d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 c x^2)
      for (int64_t i = 0; i < n; ++i) {
        const T x = inp[i];
        const T t = std::tanh(T(kSqrt2OverPi) * (x + T(kGeluTanhCoeff) * x * x * x));
        const T du = T(kSqrt2OverPi) * (T(1) + T(3 * kGeluTanhCoeff) * x * x);
        dinp[i] += dout[i] * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du);
      }
      break;
  }
}

template <typename T>
void softmax_forward(T* out, const T* inp, int64_t N, int64_t C) {
  for (int64_t n = 0; n < N; ++n) {
    const T* x = inp + n * C;
    T* y = out + n * C;
    T max = -std::numeric_limits<T>::infinity();
    for (int64_t c = 0; c < C; ++c) max = std::max(max, x[c]);
    if (max == -std::numeric_limits<T>::infinity()) {
      std::fill(y, y + C, T(0));
      continue;
    }
    T sum = 0;
    for (int64_t c = 0; c < C; ++c) {
      y[c] = std::exp(x[c] - max);
      sum += y[c];
    }
    const T inv = T(1) / sum;
    for (int64_t c = 0; c < C; ++c) y[c] *= inv;
  }
}

}  // namespace portable

// ---- Dispatch: AVX2 for float when the CPU has it, AVX-512 for the activations ------------------------

bool simd_available() { return avx2::available(); }

const char* simd_kernels() {
  if (avx512::available()) return "avx512 (activations), avx2 (norms, softmax)";
  return avx2::available() ? "avx2" : "portable";
}

template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias, int64_t N, int64_t C,
                       double eps) {
  if constexpr (std::is_same_v<T, float>)
    if (avx2::available()) return avx2::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, float(eps));
  portable::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps);
}

template <typename T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, const T* mean,
                        const T* rstd, int64_t N, int64_t C) {
  if constexpr (std::is_same_v<T, float>)
    if (avx2::available()) return avx2::layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
  portable::layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int64_t N, int64_t C, double eps) {
  if constexpr (std::is_same_v<T, float>)
    if (avx2::available()) return avx2::rmsnorm_forward(out, rstd, inp, weight, N, C, float(eps));
  portable::rmsnorm_forward(out, rstd, inp, weight, N, C, eps);
}

template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const T* rstd, int64_t N,
                      int64_t C) {
  if constexpr (std::is_same_v<T, float>)
    if (avx2::available()) return avx2::rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C);
  portable::rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C);
}

template <typename T>
void activation_forward(Activation act, T* out, const T* inp, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    if (avx512::available()) {
      switch (act) {
        case Activation::relu: return avx512::relu_forward(out, inp, n);
        case Activation::gelu: return avx512::gelu_forward(out, inp, n);
        case Activation::gelu_tanh: return avx512::gelu_tanh_forward(out, inp, n);
      }
    }
    if (avx2::available()) {
      switch (act) {
        case Activation::relu: return avx2::relu_forward(out, inp, n);
        case Activation::gelu: return avx2::gelu_forward(out, inp, n);
        case Activation::gelu_tanh: return avx2::gelu_tanh_forward(out, inp, n);
      }
    }
  }
  portable::activation_forward(act, out, inp, n);
}

template <typename T>
void activation_backward(Activation act, T* dinp, const T* inp, const T* dout, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    if (avx512::available()) {
      switch (act) {
        case Activation::relu: return avx512::relu_backward(dinp, inp, dout, n);
        case Activation::gelu: return avx512::gelu_backward(dinp, inp, dout, n);
        case Activation::gelu_tanh: return avx512::gelu_tanh_backward(dinp, inp, dout, n);
      }
    }
    if (avx2::available()) {
      switch (act) {
        case Activation::relu: return avx2::relu_backward(dinp, inp, dout, n);
        case Activation::gelu: return avx2::gelu_backward(dinp, inp, dout, n);
        case Activation::gelu_tanh: return avx2::gelu_tanh_backward(dinp, inp, dout, n);
      }
    }
  }
  portable::activation_backward(act, dinp, inp, dout, n);
}

template <typename T>
void softmax_forward(T* out, const T* inp, int64_t N, int64_t C) {
  if constexpr (std::is_same_v<T, float>)
    if (avx2::available()) return avx2::softmax_forward(out, inp, N, C);
  portable::softmax_forward(out, inp, N, C);
}

template <typename T>
void softmax_backward(T* dinp, const T* out, const T* dout, int64_t N, int64_t C) {
  // dx = y * (dy - sum(dy * y))
  for (int64_t n = 0; n < N; ++n) {
    const T* y = out + n * C;
    const T* dy = dout + n * C;
    T dot = 0;
    for (int64_t c = 0; c < C; ++c) dot += dy[c] * y[c];
    for (int64_t c = 0; c < C; ++c) dinp[n * C + c] += y[c] * (dy[c] - dot);
  }
}

// ---- Attention -------------------------------------------------------------------------------

namespace {

// Whether the (sequence, head) pairs are worth splitting over the threads: a few microseconds of work each.
bool attention_in_parallel(int64_t pairs, int64_t Tn, int64_t D) {
  return pairs > 1 && omp_get_max_threads() > 1 && !omp_in_parallel() && pairs * Tn * Tn * D >= (int64_t(1) << 16);
}

// The caller's scratch on a single thread; inside a parallel region each thread's own, grown as needed.
template <typename T>
T* thread_scratch(T* callers, int64_t n) {
  if (!omp_in_parallel()) return callers;
  thread_local std::vector<T> own;
  if (own.size() < size_t(n)) own.resize(size_t(n));
  return own.data();
}

}  // namespace

template <typename T>
void attention_forward(T* z, T* scores, T* pattern, const T* qkv, const T* dropout_mask, T* scratch, int64_t B,
                       int64_t Tn, int64_t C, int64_t H, bool causal) {
  const int64_t D = C / H;
  const int64_t ld = 3 * C;  // row stride of q, k and v inside qkv
  const T scale = T(1) / std::sqrt(T(D));
  const T neg_inf = -std::numeric_limits<T>::infinity();
  // The per-sequence, per-head products are tiny (T x T x D): in bf16 a oneDNN call each would cost more
  // than its work (measured: docs/performance.md). They stay float32; bf16 applies to the linear layers.
  const ScopedMatmulPrecision float32_products(MatmulPrecision::f32);
  // Each (sequence, head) pair is independent: split over the threads when there is enough work, each
  // with its own scratch (the same bits for any number of threads).
  const int64_t pairs = B * H;
#pragma omp parallel for schedule(static) if (attention_in_parallel(pairs, Tn, D))
  for (int64_t bh = 0; bh < pairs; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    const T* q = qkv + b * Tn * ld + h * D;
    const T* k = q + C;
    const T* v = q + 2 * C;
    T* s = scores + bh * Tn * Tn;
    T* p = pattern + bh * Tn * Tn;
    gemm<T>(false, true, Tn, Tn, D, scale, q, ld, k, ld, T(0), s, Tn);  // s = q k^T / sqrt(D)
    if (causal) {
      for (int64_t i = 0; i < Tn; ++i)
        for (int64_t j = i + 1; j < Tn; ++j) s[i * Tn + j] = neg_inf;
    }
    softmax_forward(p, s, Tn, Tn);
    const T* p_used = p;
    if (dropout_mask) {  // z = (p * mask) v
      T* dropped = thread_scratch(scratch, Tn * Tn);
      dropout_forward(dropped, p, dropout_mask + bh * Tn * Tn, Tn * Tn);
      p_used = dropped;
    }
    gemm<T>(false, false, Tn, D, Tn, T(1), p_used, Tn, v, ld, T(0), z + b * Tn * C + h * D, C);
  }
}

template <typename T>
void attention_backward(T* dqkv, const T* dz, const T* qkv, const T* pattern, const T* dropout_mask, T* scratch,
                        int64_t B, int64_t Tn, int64_t C, int64_t H) {
  // With P' = P * mask:  dP' = dz v^T ; dv += P'^T dz ; dP = dP' * mask ;
  // dS = softmax_backward(P, dP) ; dq += dS k / sqrt(D) ; dk += dS^T q / sqrt(D)
  const int64_t D = C / H;
  const int64_t ld = 3 * C;
  const T scale = T(1) / std::sqrt(T(D));
  const ScopedMatmulPrecision float32_products(MatmulPrecision::f32);  // as in the forward
  const int64_t pairs = B * H;
  // Pairs write disjoint slices of dq, dk and dv (their sequence's rows, their head's columns).
#pragma omp parallel for schedule(static) if (attention_in_parallel(pairs, Tn, D))
  for (int64_t bh = 0; bh < pairs; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    T* dp = thread_scratch(scratch, 2 * Tn * Tn);  // [T, T]
    T* p_dropped = dp + Tn * Tn;                    // [T, T], with dropout only
    const T* q = qkv + b * Tn * ld + h * D;
    const T* k = q + C;
    const T* v = q + 2 * C;
    T* dq = dqkv + b * Tn * ld + h * D;
    T* dk = dq + C;
    T* dv = dq + 2 * C;
    const T* p = pattern + bh * Tn * Tn;
    const T* m = dropout_mask ? dropout_mask + bh * Tn * Tn : nullptr;
    const T* dzh = dz + b * Tn * C + h * D;
    const T* p_used = p;
    if (m) {
      dropout_forward(p_dropped, p, m, Tn * Tn);
      p_used = p_dropped;
    }
    gemm<T>(true, false, Tn, D, Tn, T(1), p_used, Tn, dzh, C, T(1), dv, ld);  // dv += P'^T dz
    gemm<T>(false, true, Tn, Tn, D, T(1), dzh, C, v, ld, T(0), dp, Tn);  // dP' = dz v^T
    if (m) {
      for (int64_t i = 0; i < Tn * Tn; ++i) dp[i] *= m[i];
    }
    // dS = P * (dP - rowsum(dP * P)), in place in scratch
    for (int64_t i = 0; i < Tn; ++i) {
      const T* pr = p + i * Tn;
      T* dr = dp + i * Tn;
      T dot = 0;
      for (int64_t j = 0; j < Tn; ++j) dot += dr[j] * pr[j];
      for (int64_t j = 0; j < Tn; ++j) dr[j] = pr[j] * (dr[j] - dot);
    }
    gemm<T>(false, false, Tn, D, Tn, scale, dp, Tn, k, ld, T(1), dq, ld);  // dq += dS k * scale
    gemm<T>(true, false, Tn, D, Tn, scale, dp, Tn, q, ld, T(1), dk, ld);   // dk += dS^T q * scale
  }
}

template <typename T>
void attention_scores_forward(T* scores, const T* qkv, int64_t B, int64_t Tn, int64_t C, int64_t H, bool causal) {
  const int64_t D = C / H, ld = 3 * C;
  const T scale = T(1) / std::sqrt(T(D));
  const T neg_inf = -std::numeric_limits<T>::infinity();
  const ScopedMatmulPrecision float32_products(MatmulPrecision::f32);
#pragma omp parallel for schedule(static) if (attention_in_parallel(B * H, Tn, D))
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const T* q = qkv + (bh / H) * Tn * ld + (bh % H) * D;
    T* s = scores + bh * Tn * Tn;
    gemm<T>(false, true, Tn, Tn, D, scale, q, ld, q + C, ld, T(0), s, Tn);
    if (causal)
      for (int64_t i = 0; i < Tn; ++i)
        for (int64_t j = i + 1; j < Tn; ++j) s[i * Tn + j] = neg_inf;
  }
}

template <typename T>
void attention_mix_forward(T* z, const T* pattern, const T* qkv, int64_t B, int64_t Tn, int64_t C, int64_t H) {
  const int64_t D = C / H, ld = 3 * C;
  const ScopedMatmulPrecision float32_products(MatmulPrecision::f32);
#pragma omp parallel for schedule(static) if (attention_in_parallel(B * H, Tn, D))
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    const T* v = qkv + b * Tn * ld + h * D + 2 * C;
    gemm<T>(false, false, Tn, D, Tn, T(1), pattern + bh * Tn * Tn, Tn, v, ld, T(0), z + b * Tn * C + h * D, C);
  }
}

template <typename T>
void attention_mix_backward(T* dpattern, T* dqkv, const T* dz, const T* pattern, const T* qkv, int64_t B,
                            int64_t Tn, int64_t C, int64_t H) {
  const int64_t D = C / H, ld = 3 * C;
  const ScopedMatmulPrecision float32_products(MatmulPrecision::f32);
#pragma omp parallel for schedule(static) if (attention_in_parallel(B * H, Tn, D))
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    const T* v = qkv + b * Tn * ld + h * D + 2 * C;
    const T* dzh = dz + b * Tn * C + h * D;
    T* dv = dqkv + b * Tn * ld + h * D + 2 * C;
    gemm<T>(true, false, Tn, D, Tn, T(1), pattern + bh * Tn * Tn, Tn, dzh, C, T(1), dv, ld);  // dv += P^T dz
    gemm<T>(false, true, Tn, Tn, D, T(1), dzh, C, v, ld, T(1), dpattern + bh * Tn * Tn, Tn);  // dP += dz v^T
  }
}

template <typename T>
void attention_scores_backward(T* dqkv, const T* dscores, const T* qkv, int64_t B, int64_t Tn, int64_t C, int64_t H) {
  const int64_t D = C / H, ld = 3 * C;
  const T scale = T(1) / std::sqrt(T(D));
  const ScopedMatmulPrecision float32_products(MatmulPrecision::f32);
#pragma omp parallel for schedule(static) if (attention_in_parallel(B * H, Tn, D))
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    const T* q = qkv + b * Tn * ld + h * D;
    T* dq = dqkv + b * Tn * ld + h * D;
    const T* ds = dscores + bh * Tn * Tn;
    gemm<T>(false, false, Tn, D, Tn, scale, ds, Tn, q + C, ld, T(1), dq, ld);   // dq += dS k * scale
    gemm<T>(true, false, Tn, D, Tn, scale, ds, Tn, q, ld, T(1), dq + C, ld);    // dk += dS^T q * scale
  }
}

// ---- Residual --------------------------------------------------------------------------------

template <typename T>
void residual_forward(T* __restrict out, const T* __restrict x, const T* __restrict f, T alpha, bool residual, int64_t n) {
  if (residual) {
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] + alpha * f[i];
  } else {
    std::copy(f, f + n, out);
  }
}

template <typename T>
void residual_backward(T* __restrict dx, T* __restrict df, T* dalpha, const T* __restrict dout, const T* __restrict f,
                       T alpha, bool residual, int64_t n) {
  if (!residual) {
    if (df)
      for (int64_t i = 0; i < n; ++i) df[i] += dout[i];
    return;
  }
  if (dx)
    for (int64_t i = 0; i < n; ++i) dx[i] += dout[i];
  if (df)
    for (int64_t i = 0; i < n; ++i) df[i] += alpha * dout[i];
  if (dalpha) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += double(dout[i]) * f[i];
    *dalpha += T(s);
  }
}

// ---- Dropout ---------------------------------------------------------------------------------

template <typename T>
void dropout_mask(T* mask, int64_t n, double p, uint64_t seed, uint64_t stream) {
  const T keep_scale = T(1.0 / (1.0 - p));
  const uint64_t key = mix64(seed ^ mix64(stream + 0x9E3779B97F4A7C15ull));
  for (int64_t i = 0; i < n; ++i) {
    const double u = uniform01(mix64(key + uint64_t(i)));
    mask[i] = u < p ? T(0) : keep_scale;
  }
}

template <typename T>
void dropout_forward(T* out, const T* inp, const T* mask, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = inp[i] * mask[i];
}

template <typename T>
void dropout_backward(T* dinp, const T* dout, const T* mask, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dinp[i] += dout[i] * mask[i];
}

// ---- Embedding -------------------------------------------------------------------------------

template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* table, int64_t N, int64_t C) {
  for (int64_t n = 0; n < N; ++n) std::copy(table + int64_t(tokens[n]) * C, table + (int64_t(tokens[n]) + 1) * C, out + n * C);
}

template <typename T>
void embedding_backward(T* dtable, const int32_t* tokens, const T* dout, int64_t N, int64_t C) {
  for (int64_t n = 0; n < N; ++n) {
    T* row = dtable + int64_t(tokens[n]) * C;
    const T* d = dout + n * C;
    for (int64_t c = 0; c < C; ++c) row[c] += d[c];
  }
}

// ---- Cross-entropy ---------------------------------------------------------------------------

template <typename T>
double cross_entropy_forward(T* probs, const T* logits, const int32_t* targets, int64_t N, int64_t V) {
  double total = 0;
  for (int64_t n = 0; n < N; ++n) {
    const T* x = logits + n * V;
    T* p = probs + n * V;
    T max = x[0];
    for (int64_t v = 1; v < V; ++v) max = std::max(max, x[v]);
    double sum = 0;
    for (int64_t v = 0; v < V; ++v) sum += std::exp(double(x[v]) - max);
    const double log_sum = std::log(sum) + max;
    for (int64_t v = 0; v < V; ++v) p[v] = T(std::exp(double(x[v]) - log_sum));
    total += log_sum - x[targets[n]];
  }
  return total / double(N);
}

template <typename T>
void cross_entropy_backward(T* dlogits, const T* probs, const int32_t* targets, double dloss, int64_t N,
                            int64_t V) {
  const T scale = T(dloss / double(N));
  for (int64_t n = 0; n < N; ++n) {
    const T* p = probs + n * V;
    T* d = dlogits + n * V;
    for (int64_t v = 0; v < V; ++v) d[v] += scale * p[v];
    d[targets[n]] -= scale;
  }
}

// ---- AdamW -----------------------------------------------------------------------------------

template <typename T>
void adamw_update(T* __restrict param, const T* __restrict grad, T* __restrict m, T* __restrict v, int64_t n,
                  const AdamWHyper& h, int64_t step) {
  const double bias1 = 1.0 - std::pow(h.beta1, double(step));
  const double bias2 = 1.0 - std::pow(h.beta2, double(step));
  const T step_size = T(h.lr / bias1);
  const T inv_sqrt_bias2 = T(1.0 / std::sqrt(bias2));
  const T decay = T(1.0 - h.lr * h.weight_decay);
  const T b1 = T(h.beta1), b2 = T(h.beta2), eps = T(h.eps);
  if constexpr (std::is_same_v<T, float>) {  // vectorised (the portable loop ran one sqrt and one division a value)
    if (avx512::available())
      return avx512::adamw_update(param, grad, m, v, n, decay, b1, b2, eps, step_size, inv_sqrt_bias2);
    if (avx2::available()) return avx2::adamw_update(param, grad, m, v, n, decay, b1, b2, eps, step_size, inv_sqrt_bias2);
  }
  // Element by element: the same bits for any number of threads.
#pragma omp parallel for schedule(static) if (n >= (int64_t(1) << 16))
  for (int64_t i = 0; i < n; ++i) {
    const T g = grad[i];
    param[i] *= decay;
    m[i] = b1 * m[i] + (T(1) - b1) * g;
    v[i] = b2 * v[i] + (T(1) - b2) * g * g;
    param[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bias2 + eps);
  }
}

// ---- Instantiations --------------------------------------------------------------------------

#define BLOCKLAB_INSTANTIATE_KERNELS(T)                                                                    \
  template void linear_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t);              \
  template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, bool); \
  template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, double);    \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t, \
                                      int64_t);                                                              \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, double);                    \
  template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t, int64_t);       \
  template void portable::layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t,   \
                                               double);                                                      \
  template void portable::layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, \
                                                int64_t, int64_t);                                           \
  template void portable::rmsnorm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, double);          \
  template void portable::rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t,       \
                                              int64_t);                                                      \
  template void portable::activation_forward<T>(Activation, T*, const T*, int64_t);                         \
  template void portable::activation_backward<T>(Activation, T*, const T*, const T*, int64_t);              \
  template void portable::softmax_forward<T>(T*, const T*, int64_t, int64_t);                               \
  template void activation_forward<T>(Activation, T*, const T*, int64_t);                                   \
  template void activation_backward<T>(Activation, T*, const T*, const T*, int64_t);                        \
  template void softmax_forward<T>(T*, const T*, int64_t, int64_t);                                         \
  template void softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t);                              \
  template void attention_forward<T>(T*, T*, T*, const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t,  \
                                     bool);                                                                 \
  template void attention_backward<T>(T*, const T*, const T*, const T*, const T*, T*, int64_t, int64_t,      \
                                      int64_t, int64_t);                                                     \
  template void attention_scores_forward<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, bool);         \
  template void attention_mix_forward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t);        \
  template void attention_mix_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t,    \
                                          int64_t);                                                          \
  template void attention_scores_backward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t);    \
  template void residual_forward<T>(T*, const T*, const T*, T, bool, int64_t);                              \
  template void residual_backward<T>(T*, T*, T*, const T*, const T*, T, bool, int64_t);                     \
  template void dropout_mask<T>(T*, int64_t, double, uint64_t, uint64_t);                                   \
  template void dropout_forward<T>(T*, const T*, const T*, int64_t);                                        \
  template void dropout_backward<T>(T*, const T*, const T*, int64_t);                                       \
  template void embedding_forward<T>(T*, const int32_t*, const T*, int64_t, int64_t);                       \
  template void embedding_backward<T>(T*, const int32_t*, const T*, int64_t, int64_t);                      \
  template double cross_entropy_forward<T>(T*, const T*, const int32_t*, int64_t, int64_t);                 \
  template void cross_entropy_backward<T>(T*, const T*, const int32_t*, double, int64_t, int64_t);          \
  template void adamw_update<T>(T*, const T*, T*, T*, int64_t, const AdamWHyper&, int64_t);

BLOCKLAB_INSTANTIATE_KERNELS(float)
BLOCKLAB_INSTANTIATE_KERNELS(double)

}  // namespace blocklab
