// AVX-512 versions of the elementwise activation kernels (kernels_avx512.cpp, compiled for AVX-512F
// through a target pragma; the rest of the engine stays baseline x86-64). kernels.cpp calls them when
// the CPU has AVX-512F, else the AVX2 ones; both compute the same bits for every element (the maths is
// simd_kernels.h's, on 16 floats instead of 8; kernels_test checks it). Internal header.
#pragma once

#include <cstdint>

namespace blocklab::avx512 {

bool available();  // this CPU has AVX-512F (and AVX2 + FMA, which every AVX-512 CPU has)

void relu_forward(float* out, const float* inp, int64_t n);
void relu_backward(float* dinp, const float* inp, const float* dout, int64_t n);
void gelu_forward(float* out, const float* inp, int64_t n);
void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n);
void gelu_tanh_forward(float* out, const float* inp, int64_t n);
void gelu_tanh_backward(float* dinp, const float* inp, const float* dout, int64_t n);

// One AdamW step on float32 (kernels.cpp's adamw_update computes the scalars): the same bits as the AVX2 one.
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float decay, float b1, float b2,
                  float eps, float step_size, float inv_sqrt_bias2);

}  // namespace blocklab::avx512
