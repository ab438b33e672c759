// The engine's kernels: pure math on contiguous row-major buffers, each a forward/backward pair
// side by side (llm.c style). T is float (normal work) or double (gradient checks).
//
// Conventions, for every pair:
// - Shapes are in the comments; N is the number of rows (tokens, B*T), C the row width.
// - A forward saves exactly what its backward needs (mean, rstd, the pattern, ...).
// - A backward ACCUMULATES (+=) into every gradient it is given (dinp, dweight, ...), so the caller
//   zeroes gradient buffers once and branches of the graph simply add up. A null gradient pointer
//   means "not needed" and is skipped.
#pragma once

#include <cstdint>

#include "engine/config.h"

namespace blocklab {

// The float32 versions of the norms, activations and softmax use AVX2 + FMA when this CPU has them
// (kernels_avx2.cpp), the activations AVX-512 where it has AVX-512F (kernels_avx512.cpp: the same bits as
// AVX2, twice the width), else the portable code, which double always uses. `portable::` reaches the
// portable code directly (the tests compare them).
bool simd_available();
// Which vector code the float32 kernels run here, in words, e.g. "avx512 (activations), avx2 (norms,
// softmax)", "avx2" or "portable" (bench prints it).
const char* simd_kernels();

// ---- Linear: out[N, OC] = inp[N, IC] * weight[OC, IC]^T + bias[OC]  (PyTorch layout) ----------
template <typename T>
void linear_forward(T* out, const T* inp, const T* weight, const T* bias, int64_t N, int64_t IC, int64_t OC);
// accumulate_weight = false writes dweight instead of adding to it (saves reading it, and zeroing it first).
template <typename T>
void linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, int64_t N,
                     int64_t IC, int64_t OC, bool accumulate_weight = true);

// ---- LayerNorm over the last axis, biased variance ------------------------------------------
// mean[N], rstd[N] = 1/sqrt(var + eps), out[N, C] = (x - mean) * rstd * weight + bias.
// The backward recomputes xhat = (x - mean) * rstd from the input: one write less in the forward.
template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias, int64_t N, int64_t C,
                       double eps);
template <typename T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, const T* mean,
                        const T* rstd, int64_t N, int64_t C);

// ---- RMSNorm: rstd[N] = 1/sqrt(mean(x^2) + eps), out = x * rstd * weight -------------------
template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int64_t N, int64_t C, double eps);
template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const T* rstd, int64_t N,
                      int64_t C);

// ---- Activations, elementwise over n values --------------------------------------------------
// relu(x) = max(0, x)
// gelu(x) = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))                     (exact)
// gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))          (PyTorch approximate='tanh')
template <typename T>
void activation_forward(Activation act, T* out, const T* inp, int64_t n);
template <typename T>
void activation_backward(Activation act, T* dinp, const T* inp, const T* dout, int64_t n);

// ---- Softmax over rows of width C ------------------------------------------------------------
// A row of -inf (fully masked) gives a row of zeros.
template <typename T>
void softmax_forward(T* out, const T* inp, int64_t N, int64_t C);
template <typename T>
void softmax_backward(T* dinp, const T* out, const T* dout, int64_t N, int64_t C);

// ---- Multi-head scaled dot-product attention (PyTorch fused in_proj layout) -----------------
// qkv[B, T, 3C] holds q | k | v along the last axis (C = H * D); head h uses columns h*D..h*D+D-1
// of each. scores[B, H, T, T] = q k^T / sqrt(D), -inf above the diagonal when causal;
// pattern = softmax(scores); z[B, T, C] = pattern v with the heads side by side.
// dropout_mask (nullable, [B, H, T, T], values 0 or 1/(1-p)) is applied to the pattern before v;
// scratch holds T*T values (used with dropout only).
template <typename T>
void attention_forward(T* z, T* scores, T* pattern, const T* qkv, const T* dropout_mask, T* scratch, int64_t B,
                       int64_t Tn, int64_t C, int64_t H, bool causal);
// scratch holds 2*T*T values.
template <typename T>
void attention_backward(T* dqkv, const T* dz, const T* qkv, const T* pattern, const T* dropout_mask, T* scratch,
                        int64_t B, int64_t Tn, int64_t C, int64_t H);

// The same attention in three stages, for hooks that read or patch the scores or the pattern between them
// (Model with hooks; the same products as attention_forward, so the same bits). No dropout.
//   scores = q k^T / sqrt(D) (-inf above the diagonal when causal) ; pattern = softmax(scores) (softmax_forward
//   over B*H*T rows) ; z = pattern v.
template <typename T>
void attention_scores_forward(T* scores, const T* qkv, int64_t B, int64_t Tn, int64_t C, int64_t H, bool causal);
template <typename T>
void attention_mix_forward(T* z, const T* pattern, const T* qkv, int64_t B, int64_t Tn, int64_t C, int64_t H);
// dpattern += dz v^T ; dv += pattern^T dz (the v columns of dqkv).
template <typename T>
void attention_mix_backward(T* dpattern, T* dqkv, const T* dz, const T* pattern, const T* qkv, int64_t B,
                            int64_t Tn, int64_t C, int64_t H);
// dq += dscores k / sqrt(D) ; dk += dscores^T q / sqrt(D) (the q and k columns of dqkv).
template <typename T>
void attention_scores_backward(T* dqkv, const T* dscores, const T* qkv, int64_t B, int64_t Tn, int64_t C, int64_t H);

// ---- Residual with strength alpha: out = x + alpha * f, or out = f when the residual is off --
template <typename T>
void residual_forward(T* out, const T* x, const T* f, T alpha, bool residual, int64_t n);
// dalpha (nullable) receives sum(dout * f), for a learnable alpha (ReZero).
template <typename T>
void residual_backward(T* dx, T* df, T* dalpha, const T* dout, const T* f, T alpha, bool residual, int64_t n);

// ---- Dropout (training only): out = inp * mask, mask = 0 with probability p, else 1/(1-p) ----
// The mask is a pure function of (seed, stream, index): the same seed gives the same mask.
template <typename T>
void dropout_mask(T* mask, int64_t n, double p, uint64_t seed, uint64_t stream);
template <typename T>
void dropout_forward(T* out, const T* inp, const T* mask, int64_t n);
template <typename T>
void dropout_backward(T* dinp, const T* dout, const T* mask, int64_t n);

// ---- Embedding: out[N, C] = table[tokens[n], :] -----------------------------------------------
// REQUIRES: 0 <= tokens[n] < V (checked by the caller).
template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* table, int64_t N, int64_t C);
template <typename T>
void embedding_backward(T* dtable, const int32_t* tokens, const T* dout, int64_t N, int64_t C);

// ---- Softmax cross-entropy, mean over N rows: loss = mean(logsumexp(logits) - logits[target]) --
// probs[N, V] is saved for the backward. Returns the mean loss. REQUIRES: 0 <= targets[n] < V.
template <typename T>
double cross_entropy_forward(T* probs, const T* logits, const int32_t* targets, int64_t N, int64_t V);
// dlogits += dloss * (probs - onehot(target)) / N
template <typename T>
void cross_entropy_backward(T* dlogits, const T* probs, const int32_t* targets, double dloss, int64_t N,
                            int64_t V);

// ---- AdamW (PyTorch torch.optim.AdamW semantics; Adam is weight_decay = 0) --------------------
// param *= 1 - lr * wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// param -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), for step t >= 1.
struct AdamWHyper {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};
template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWHyper& h, int64_t step);

namespace portable {
template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias, int64_t N, int64_t C,
                       double eps);
template <typename T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, const T* mean,
                        const T* rstd, int64_t N, int64_t C);
template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int64_t N, int64_t C, double eps);
template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const T* rstd, int64_t N,
                      int64_t C);
template <typename T>
void activation_forward(Activation act, T* out, const T* inp, int64_t n);
template <typename T>
void activation_backward(Activation act, T* dinp, const T* inp, const T* dout, int64_t n);
template <typename T>
void softmax_forward(T* out, const T* inp, int64_t N, int64_t C);
}  // namespace portable

}  // namespace blocklab
