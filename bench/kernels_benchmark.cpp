// Google Benchmark micro-benchmarks of single kernels at the interactive shape (16 tokens, d_model 64,
// d_ff 256) and at the contract's shape (4096 tokens, d_model 512, d_ff 2048). Whole-case timings and the
// PyTorch comparison are `blocklab bench` and bench/torch_compare.py; this is for kernel work.
//   build/kernels_benchmark [--benchmark_filter=LayerNorm]
#include <benchmark/benchmark.h>

#include <vector>

#include "engine/blas.h"
#include "engine/kernels.h"
#include "engine/kernels_avx2.h"
#include "engine/kernels_avx512.h"
#include "engine/rng.h"

namespace blocklab {
namespace {

std::vector<float> random_values(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = float(rng.normal());
  return v;
}

// Args: tokens, width.
void BM_LayerNormForward(benchmark::State& state) {
  const int64_t N = state.range(0), C = state.range(1);
  const auto x = random_values(N * C, 1), w = random_values(C, 2), b = random_values(C, 3);
  std::vector<float> out(x.size()), mean(static_cast<size_t>(N)), rstd(static_cast<size_t>(N));
  for (auto _ : state) {
    layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * N * C * 4 * 2);  // read x, write out
}
BENCHMARK(BM_LayerNormForward)->Args({16, 64})->Args({4096, 512});

void BM_RMSNormForward(benchmark::State& state) {
  const int64_t N = state.range(0), C = state.range(1);
  const auto x = random_values(N * C, 1), w = random_values(C, 2);
  std::vector<float> out(x.size()), rstd(static_cast<size_t>(N));
  for (auto _ : state) {
    rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * N * C * 4 * 2);
}
BENCHMARK(BM_RMSNormForward)->Args({16, 64})->Args({4096, 512});

void BM_Activation(benchmark::State& state) {
  const auto act = static_cast<Activation>(state.range(0));
  const int64_t n = state.range(1);
  const auto x = random_values(n, 1);
  std::vector<float> y(x.size());
  for (auto _ : state) {
    activation_forward(act, y.data(), x.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Activation)
    ->ArgsProduct({{int(Activation::relu), int(Activation::gelu), int(Activation::gelu_tanh)}, {16 * 256, 4096 * 2048}});

// The activations on each ISA's kernels side by side (the dispatch above picks the widest): args ISA (2: AVX2,
// 512: AVX-512), activation, forward (0) or backward (1), n.
void BM_ActivationIsa(benchmark::State& state) {
  const bool wide = state.range(0) == 512;
  if (!avx2::available() || (wide && !avx512::available())) {
    state.SkipWithError("this CPU lacks the ISA");
    return;
  }
  const auto act = static_cast<Activation>(state.range(1));
  const bool backward = state.range(2) == 1;
  const int64_t n = state.range(3);
  using Fwd = void (*)(float*, const float*, int64_t);
  using Bwd = void (*)(float*, const float*, const float*, int64_t);
  const Fwd fwd[2][3] = {{avx2::relu_forward, avx2::gelu_forward, avx2::gelu_tanh_forward},
                         {avx512::relu_forward, avx512::gelu_forward, avx512::gelu_tanh_forward}};
  const Bwd bwd[2][3] = {{avx2::relu_backward, avx2::gelu_backward, avx2::gelu_tanh_backward},
                         {avx512::relu_backward, avx512::gelu_backward, avx512::gelu_tanh_backward}};
  const auto x = random_values(n, 1), dy = random_values(n, 2);
  std::vector<float> y(x.size());
  for (auto _ : state) {
    if (backward) bwd[wide][int(act)](y.data(), x.data(), dy.data(), n);
    else fwd[wide][int(act)](y.data(), x.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_ActivationIsa)
    ->ArgsProduct({{2, 512}, {int(Activation::gelu), int(Activation::gelu_tanh)}, {0, 1}, {16 * 256, 4096 * 2048}});

void BM_LinearForward(benchmark::State& state) {
  const int64_t N = state.range(0), IC = state.range(1), OC = state.range(2);
  set_blas_threads(1);
  const auto x = random_values(N * IC, 1), w = random_values(OC * IC, 2), b = random_values(OC, 3);
  std::vector<float> y(static_cast<size_t>(N * OC));
  for (auto _ : state) {
    linear_forward(y.data(), x.data(), w.data(), b.data(), N, IC, OC);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(double(2 * N * IC * OC) * double(state.iterations()), benchmark::Counter::kIsRate,
                         benchmark::Counter::kIs1000);
}
BENCHMARK(BM_LinearForward)->Args({16, 64, 256})->Args({640, 512, 2048});


void BM_AttentionForward(benchmark::State& state) {
  const int64_t B = state.range(0), T = state.range(1), C = state.range(2), H = state.range(3);
  set_blas_threads(1);
  const auto qkv = random_values(B * T * 3 * C, 1);
  std::vector<float> z(static_cast<size_t>(B * T * C)), scores(static_cast<size_t>(B * H * T * T)), pattern(scores.size()),
      scratch(static_cast<size_t>(T * T));
  for (auto _ : state) {
    attention_forward(z.data(), scores.data(), pattern.data(), qkv.data(), static_cast<const float*>(nullptr),
                      scratch.data(), B, T, C, H, true);
    benchmark::DoNotOptimize(z.data());
  }
}
BENCHMARK(BM_AttentionForward)->Args({1, 16, 64, 4})->Args({32, 20, 512, 8});

}  // namespace
}  // namespace blocklab

BENCHMARK_MAIN();
