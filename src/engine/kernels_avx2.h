// AVX2 + FMA versions of the memory-bound float32 kernels (kernels_avx2.cpp is the only file compiled
// with -mavx2 -mfma). kernels.cpp calls them when the CPU has both, else the portable versions; the
// results agree with the portable ones to float32 rounding (kernels_test checks it). Internal header.
#pragma once

#include <cstdint>

namespace blocklab::avx2 {

bool available();  // this CPU has AVX2 and FMA

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int64_t N, int64_t C, float eps);
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C);
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C, float eps);
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int64_t N, int64_t C);

void relu_forward(float* out, const float* inp, int64_t n);
void relu_backward(float* dinp, const float* inp, const float* dout, int64_t n);
void gelu_forward(float* out, const float* inp, int64_t n);       // exact: x * Phi(x)
void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n);
void gelu_tanh_forward(float* out, const float* inp, int64_t n);  // tanh approximation
void gelu_tanh_backward(float* dinp, const float* inp, const float* dout, int64_t n);

void softmax_forward(float* out, const float* inp, int64_t N, int64_t C);

// One AdamW step on float32 (kernels.cpp's adamw_update computes the scalars): vectors of 8.
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float decay, float b1, float b2,
                  float eps, float step_size, float inv_sqrt_bias2);



}  // namespace blocklab::avx2
