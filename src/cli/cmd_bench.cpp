// blocklab bench [--json] [--threads N] [--filter S] [--min-repeats N] [--budget-s S]
// Times the contract's cases (docs/performance.md). bench/torch_compare.py runs the same cases in
// PyTorch in the same run and prints the ratios.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "engine/blas.h"
#include "engine/kernels.h"
#include "engine/model.h"
#include "engine/params.h"
#include "engine/rng.h"
#include "io/gpt2.h"

namespace blocklab::cli {

namespace {

struct BenchArgs {
  bool json = false;
  int threads = 1;
  std::string filter;
  int min_repeats = 5;
  double budget_s = 1.0;
};

struct Timing {
  double ms_min = 0, ms_median = 0;
  int repeats = 0;
};

// One untimed warm-up call, then at least min_repeats timed calls and until budget_s has passed
// (at most 1000 calls). Minimum and median of the per-call times.
Timing time_calls(const std::function<void()>& fn, int min_repeats, double budget_s) {
  using clock = std::chrono::steady_clock;
  fn();
  std::vector<double> ms;
  const auto start = clock::now();
  while (int(ms.size()) < min_repeats ||
         (std::chrono::duration<double>(clock::now() - start).count() < budget_s && ms.size() < 1000)) {
    const auto t0 = clock::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  return {ms.front(), n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]), int(n)};
}

std::vector<float> random_values(int64_t n, uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = float(rng.normal() * scale);
  return v;
}

struct Case {
  std::string name, shape;
  // Prepares its data and returns the function to time.
  std::function<std::function<void()>()> setup;
  double bytes = 0;  // memory traffic a call needs at least (the memory-bound cases)
  double flops = 0;  // floating-point operations of a call (the GEMM-bound cases)
};

// The contract's shapes: 4096 tokens (32 sequences of 128), d_model 512, d_ff 2048, 8 heads.
constexpr int64_t kBatch = 32, kSeq = 128, kTokens = kBatch * kSeq, kD = 512, kFF = 2048, kHeads = 8;

std::function<void()> norm_case(Norm norm, bool with_backward, int64_t kTokens = 4096, int64_t kD = 512) {
  auto x = std::make_shared<std::vector<float>>(random_values(kTokens * kD, 1));
  auto dy = std::make_shared<std::vector<float>>(random_values(kTokens * kD, 2));
  auto w = std::make_shared<std::vector<float>>(random_values(kD, 3, 0.1));
  auto b = std::make_shared<std::vector<float>>(random_values(kD, 4, 0.1));
  auto buf = std::make_shared<std::vector<float>>(size_t(3 * kTokens * kD + 4 * kD + 2 * kTokens));
  return [=] {
    float* out = buf->data();
    float* dx = out + kTokens * kD;
    float* dw = dx + kTokens * kD;
    float* db = dw + kD;
    float* mean = db + kD;
    float* rstd = mean + kTokens;
    if (norm == Norm::layernorm) {
      layernorm_forward(out, mean, rstd, x->data(), w->data(), b->data(), kTokens, kD, 1e-5);
      if (with_backward) layernorm_backward(dx, dw, db, dy->data(), x->data(), w->data(), mean, rstd, kTokens, kD);
    } else {
      rmsnorm_forward(out, rstd, x->data(), w->data(), kTokens, kD, 1e-5);
      if (with_backward) rmsnorm_backward(dx, dw, dy->data(), x->data(), w->data(), rstd, kTokens, kD);
    }
  };
}

std::function<void()> ffn_case() {
  // out = gelu(x W1^T + b1) W2^T + b2, then every gradient.
  struct Ffn {
    std::vector<float> x, w1, b1, w2, b2, dy, pre, post, out, dx, dw1, db1, dw2, db2, dpost, dpre;
  };
  auto s = std::make_shared<Ffn>();
  s->x = random_values(kTokens * kD, 1);
  s->w1 = random_values(kFF * kD, 2, 0.04);
  s->b1 = random_values(kFF, 3, 0.04);
  s->w2 = random_values(kD * kFF, 4, 0.02);
  s->b2 = random_values(kD, 5, 0.02);
  s->dy = random_values(kTokens * kD, 6);
  for (auto* v : {&s->pre, &s->post, &s->dpost, &s->dpre}) v->assign(size_t(kTokens * kFF), 0.f);
  for (auto* v : {&s->out, &s->dx}) v->assign(size_t(kTokens * kD), 0.f);
  s->dw1.assign(size_t(kFF * kD), 0.f);
  s->dw2.assign(size_t(kD * kFF), 0.f);
  s->db1.assign(size_t(kFF), 0.f);
  s->db2.assign(size_t(kD), 0.f);
  return [s] {
    linear_forward(s->pre.data(), s->x.data(), s->w1.data(), s->b1.data(), kTokens, kD, kFF);
    activation_forward(Activation::gelu, s->post.data(), s->pre.data(), kTokens * kFF);
    linear_forward(s->out.data(), s->post.data(), s->w2.data(), s->b2.data(), kTokens, kFF, kD);
    std::fill(s->dpost.begin(), s->dpost.end(), 0.f);
    std::fill(s->dpre.begin(), s->dpre.end(), 0.f);
    std::fill(s->dx.begin(), s->dx.end(), 0.f);
    linear_backward(s->dpost.data(), s->dw2.data(), s->db2.data(), s->dy.data(), s->post.data(), s->w2.data(), kTokens,
                    kFF, kD);
    activation_backward(Activation::gelu, s->dpre.data(), s->pre.data(), s->dpost.data(), kTokens * kFF);
    linear_backward(s->dx.data(), s->dw1.data(), s->db1.data(), s->dpre.data(), s->x.data(), s->w1.data(), kTokens,
                    kD, kFF);
  };
}

std::function<void()> block_case(Placement placement) {
  ModelConfig c;
  c.d_model = kD;
  c.n_heads = kHeads;
  c.d_ff = kFF;
  c.n_layers = 1;
  c.placement = placement;
  auto model = std::make_shared<Model<float>>(std::move(Model<float>::create(c).value()));
  init_parameters(model->layout(), 1, model->params().data());
  auto x = std::make_shared<std::vector<float>>(random_values(kTokens * kD, 1));
  auto dy = std::make_shared<std::vector<float>>(random_values(kTokens * kD, 2));
  auto dx = std::make_shared<std::vector<float>>(size_t(kTokens * kD));
  return [=] {
    (void)model->forward(x->data(), kBatch, kSeq);
    model->backward(dy->data(), dx->data(), Model<float>::Grads::overwrite);
  };
}

std::function<void()> copy_train_step_case(MatmulPrecision precision) {
  // The seeds' copy task: Embedding(10, 512) -> pre-norm block (8 heads, d_ff 2048) -> LayerNorm ->
  // Linear(512, 10); batch 32 x 20 tokens from 0..4; Adam, lr 1e-3.
  ModelConfig c;
  c.d_model = kD;
  c.n_heads = kHeads;
  c.d_ff = kFF;
  c.n_layers = 1;
  c.final_norm = true;
  c.vocab_size = 10;
  struct Train {
    Model<float> model;
    std::vector<float> m, v;
    std::vector<int32_t> tokens;
    int64_t step = 0;
  };
  auto t = std::make_shared<Train>(Train{std::move(Model<float>::create(c).value()), {}, {}, {}, 0});
  init_parameters(t->model.layout(), 1, t->model.params().data());
  t->m.assign(t->model.params().size(), 0.f);
  t->v.assign(t->model.params().size(), 0.f);
  Rng rng(7);
  for (int i = 0; i < 32 * 20; ++i) t->tokens.push_back(int32_t(rng.below(5)));
  return [t, precision] {
    const ScopedMatmulPrecision scope(precision);
    (void)t->model.forward_lm(t->tokens.data(), t->tokens.data(), 32, 20);
    t->model.backward_lm(Model<float>::Grads::overwrite);
    AdamWHyper h;
    h.lr = 1e-3;
    adamw_update(t->model.params().data(), t->model.grads().data(), t->m.data(), t->v.data(),
                 int64_t(t->model.params().size()), h, ++t->step);
  };
}

// The interactive shape of the web pages: 16 tokens, d_model 64, d_ff 256.
constexpr int64_t kSmallT = 16, kSmallD = 64, kSmallFF = 256;

std::function<void()> small_ffn_case() {
  // The FFN widget's computation: act(x W1^T + b1) W2^T + b2 for 16 tokens.
  auto x = std::make_shared<std::vector<float>>(random_values(kSmallT * kSmallD, 1));
  auto w1 = std::make_shared<std::vector<float>>(random_values(kSmallFF * kSmallD, 2, 0.1));
  auto b1 = std::make_shared<std::vector<float>>(random_values(kSmallFF, 3, 0.1));
  auto w2 = std::make_shared<std::vector<float>>(random_values(kSmallD * kSmallFF, 4, 0.05));
  auto b2 = std::make_shared<std::vector<float>>(random_values(kSmallD, 5, 0.05));
  auto pre = std::make_shared<std::vector<float>>(size_t(kSmallT * kSmallFF));
  auto post = std::make_shared<std::vector<float>>(pre->size());
  auto out = std::make_shared<std::vector<float>>(size_t(kSmallT * kSmallD));
  return [=] {
    linear_forward(pre->data(), x->data(), w1->data(), b1->data(), kSmallT, kSmallD, kSmallFF);
    activation_forward(Activation::gelu_tanh, post->data(), pre->data(), kSmallT * kSmallFF);
    linear_forward(out->data(), post->data(), w2->data(), b2->data(), kSmallT, kSmallFF, kSmallD);
  };
}

std::function<void()> gradflow_100_case() {
  // The gradient-flow page's computation: a 100-layer language model (vocabulary 10) forward and
  // backward on one sequence of 16 tokens.
  ModelConfig c;
  c.d_model = kSmallD;
  c.n_heads = 4;
  c.d_ff = kSmallFF;
  c.n_layers = 100;
  c.vocab_size = 10;
  auto model = std::make_shared<Model<float>>(std::move(Model<float>::create(c).value()));
  init_parameters(model->layout(), 1, model->params().data());
  auto tokens = std::make_shared<std::vector<int32_t>>();
  Rng rng(3);
  for (int i = 0; i < kSmallT; ++i) tokens->push_back(int32_t(rng.below(5)));
  return [=] {
    (void)model->forward_lm(tokens->data(), tokens->data(), 1, kSmallT);
    model->backward_lm(Model<float>::Grads::overwrite);
  };
}

// GPT-2 small: 124M parameters (12 layers, d 768, 12 heads, d_ff 3072, vocab 50257, 1024 positions), random
// weights (init's scheme), the config as a GPT-2 folder's config.json gives it.
constexpr int64_t kGpt2Tokens = 64, kGpt2D = 768, kGpt2Layers = 12, kGpt2Vocab = 50257;

std::function<void()> gpt2_small_case() {
  // One sequence of 64 tokens forward: logits and the full trace, every activation copied out under its name as
  // `forward --trace` writes them (docs/gpt2.md).
  const nlohmann::json config_json = {{"n_embd", kGpt2D}, {"n_head", 12}, {"n_layer", kGpt2Layers}, {"n_positions", 1024},
                                      {"vocab_size", kGpt2Vocab}};
  const ModelConfig c = io::gpt2_config_from_json(config_json, "bench").value();
  auto model = std::make_shared<Model<float>>(std::move(Model<float>::create(c).value()));
  init_parameters(model->layout(), 1, model->params().data());
  auto tokens = std::make_shared<std::vector<int32_t>>();
  Rng rng(5);
  for (int64_t i = 0; i < kGpt2Tokens; ++i) tokens->push_back(int32_t(rng.below(kGpt2Vocab)));
  auto kept = std::make_shared<size_t>(0);
  return [=] {
    (void)model->forward_lm(tokens->data(), nullptr, 1, kGpt2Tokens);
    const std::vector<NamedTensor<float>> trace = model->trace(true);
    *kept = trace.size();
  };
}

// FLOPs of a GPT-2 forward on N tokens of one sequence: per layer the linears 2 N (4 d^2 + 2 d f) and attention
// 4 N^2 d; the tied head 2 N d V.
double gpt2_forward_flops(double N, double d, double f, double L, double V) {
  return L * (2 * N * (4 * d * d + 2 * d * f) + 4 * N * N * d) + 2 * N * d * V;
}

std::function<void()> stream_triad_case() {
  // a = b + s * c over 3 x 32 MiB: the machine's memory bandwidth, as STREAM measures it.
  constexpr int64_t n = 8 << 20;
  auto a = std::make_shared<std::vector<float>>(size_t(n), 0.f);
  auto b = std::make_shared<std::vector<float>>(size_t(n), 1.f);
  auto c = std::make_shared<std::vector<float>>(size_t(n), 2.f);
  return [=] {
    float* __restrict pa = a->data();
    const float* __restrict pb = b->data();
    const float* __restrict pc = c->data();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) pa[i] = pb[i] + 3.0f * pc[i];
  };
}

std::function<void()> sgemm_case(MatmulPrecision precision, std::optional<GemmLibrary> library = std::nullopt) {
  // C[4096, 2048] = A[4096, 512] B[2048, 512]^T: the best GEMM rate, the FLOP limit of the GEMM-bound cases.
  // In bf16 the rounding of A and B to bfloat16 is part of the time, as it is in a bf16 training step.
  auto a = std::make_shared<std::vector<float>>(random_values(kTokens * kD, 1));
  auto b = std::make_shared<std::vector<float>>(random_values(kFF * kD, 2));
  auto c = std::make_shared<std::vector<float>>(size_t(kTokens * kFF));
  return [=] {
    const ScopedMatmulPrecision scope(precision);
    const ScopedGemmLibrary on(library.value_or(gemm_choice().library));
    gemm<float>(false, true, kTokens, kFF, kD, 1.f, a->data(), kD, b->data(), kD, 0.f, c->data(), kFF);
  };
}

// FLOPs of one block's forward and backward: linears 3 x 2 N (4 d^2 + 2 d f), attention 3 x 4 B T^2 d.
double block_flops(double B, double T, double d, double f) {
  return 3 * (2 * B * T * (4 * d * d + 2 * d * f) + 4 * B * T * T * d);
}

std::vector<Case> all_cases() {
  const std::string nd = "[4096, 512]", blk = "B 32 x T 128, d 512, 8 heads, d_ff 2048";
  const double nd_bytes = double(kTokens * kD) * 4;
  return {
      {"stream_triad", "3 x 8M floats", stream_triad_case, 3.0 * (8 << 20) * 4, 0},
      {"sgemm", "4096 x 2048 x 512", [] { return sgemm_case(MatmulPrecision::f32); }, 0, 2.0 * kTokens * kFF * kD},
      // both float32 libraries side by side, whichever the machine runs (the GEMM line below says which)
      {"sgemm_openblas", "the same, on OpenBLAS", [] { return sgemm_case(MatmulPrecision::f32, GemmLibrary::openblas); },
       0, 2.0 * kTokens * kFF * kD},
      {"sgemm_onednn", "the same, on oneDNN's matmul",
       [] { return sgemm_case(MatmulPrecision::f32, GemmLibrary::onednn); }, 0, 2.0 * kTokens * kFF * kD},
      {"gemm_bf16", "4096 x 2048 x 512, inputs rounded to bf16", [] { return sgemm_case(MatmulPrecision::bf16); }, 0,
       2.0 * kTokens * kFF * kD},
      // forward: read x, write out; backward also: read dy and x, read and write dx
      {"layernorm_fwd", nd, [] { return norm_case(Norm::layernorm, false); }, 2 * nd_bytes, 0},
      {"layernorm_fwdbwd", nd, [] { return norm_case(Norm::layernorm, true); }, 6 * nd_bytes, 0},
      {"rmsnorm_fwd", nd, [] { return norm_case(Norm::rmsnorm, false); }, 2 * nd_bytes, 0},
      {"rmsnorm_fwdbwd", nd, [] { return norm_case(Norm::rmsnorm, true); }, 6 * nd_bytes, 0},
      {"gelu_tanh_fwd", "[4096, 2048]",
       [] {
         auto x = std::make_shared<std::vector<float>>(random_values(kTokens * kFF, 1));
         auto y = std::make_shared<std::vector<float>>(size_t(kTokens * kFF));
         return std::function<void()>(
             [=] { activation_forward(Activation::gelu_tanh, y->data(), x->data(), kTokens * kFF); });
       },
       2.0 * kTokens * kFF * 4, 0},
      {"ffn_fwdbwd", "4096 tokens, 512 -> 2048 (gelu) -> 512", ffn_case, 0, 12.0 * kTokens * kD * kFF},
      {"block_pre_fwdbwd", blk + ", layernorm, gelu", [] { return block_case(Placement::pre); }, 0,
       block_flops(kBatch, kSeq, kD, kFF)},
      {"block_post_fwdbwd", blk + ", layernorm, gelu", [] { return block_case(Placement::post); }, 0,
       block_flops(kBatch, kSeq, kD, kFF)},
      {"copy_train_step", "LM vocab 10, 1 block d 512, batch 32 x 20, Adam",
       [] { return copy_train_step_case(MatmulPrecision::f32); }, 0, block_flops(32, 20, kD, kFF) + 3 * 2.0 * 640 * kD * 10},
      {"copy_train_step_bf16", "the same, matmuls in bf16", [] { return copy_train_step_case(MatmulPrecision::bf16); },
       0, block_flops(32, 20, kD, kFF) + 3 * 2.0 * 640 * kD * 10},
      {"ffn_small_fwd", "16 tokens, 64 -> 256 (gelu_tanh) -> 64", small_ffn_case, 0, 4.0 * kSmallT * kSmallD * kSmallFF},
      {"layernorm_small_fwdbwd", "[16, 64]", [] { return norm_case(Norm::layernorm, true, kSmallT, kSmallD); },
       6.0 * kSmallT * kSmallD * 4, 0},
      {"rmsnorm_small_fwdbwd", "[16, 64]", [] { return norm_case(Norm::rmsnorm, true, kSmallT, kSmallD); },
       6.0 * kSmallT * kSmallD * 4, 0},
      {"gradflow_100", "100 layers, 16 tokens, d 64, d_ff 256, fwd+bwd", gradflow_100_case, 0,
       100 * block_flops(1, kSmallT, kSmallD, kSmallFF)},
      {"gpt2_small_fwd_trace", "GPT-2 124M, 64 tokens, logits + full trace", gpt2_small_case, 0,
       gpt2_forward_flops(kGpt2Tokens, kGpt2D, 4 * kGpt2D, kGpt2Layers, kGpt2Vocab)},
  };
}

int run_bench(const BenchArgs& a) {
  if (a.threads < 1) return fail("bench", "--threads: expected an integer >= 1, got " + std::to_string(a.threads));
  set_blas_threads(a.threads);
  nlohmann::json cases = nlohmann::json::array();
  if (!a.json)
    std::printf("%-20s %-44s %12s %12s %8s %10s\n", "case", "shape", "ms_min", "ms_median", "repeats", "rate");
  for (const Case& c : all_cases()) {
    if (!a.filter.empty() && c.name.find(a.filter) == std::string::npos) continue;
    const Timing t = time_calls(c.setup(), a.min_repeats, a.budget_s);
    cases.push_back({{"name", c.name}, {"shape", c.shape}, {"ms_min", t.ms_min}, {"ms_median", t.ms_median},
                     {"repeats", t.repeats}, {"bytes", c.bytes}, {"flops", c.flops}});
    if (!a.json) {
      char rate[32] = "";
      if (c.bytes > 0) std::snprintf(rate, sizeof rate, "%.1f GB/s", c.bytes / t.ms_min / 1e6);
      if (c.flops > 0) std::snprintf(rate, sizeof rate, "%.1f GFLOP/s", c.flops / t.ms_min / 1e6);
      std::printf("%-20s %-44s %12.3f %12.3f %8d %10s\n", c.name.c_str(), c.shape.c_str(), t.ms_min, t.ms_median,
                  t.repeats, rate);
    }
  }
  if (a.json)
    std::cout << nlohmann::json{{"threads", a.threads},
                                {"blas", blas_description()},
                                {"gemm", gemm_choice().how},
                                {"bf16", bf16_support().how},
                                {"kernels", simd_kernels()},
                                {"cases", cases}}
                     .dump(2)
              << std::endl;
  else
    std::printf("GEMM: %s\nBLAS: %s; bf16 cases: %s\nKernels: %s\n", gemm_choice().how.c_str(),
                blas_description().c_str(), bf16_support().how.c_str(), simd_kernels());
  return 0;
}

}  // namespace

Runner add_bench_command(CLI::App& sub) {
  auto args = std::make_shared<BenchArgs>();
  sub.footer("Cases and method: docs/performance.md. PyTorch side by side: python3 bench/torch_compare.py");
  sub.add_flag("--json", args->json, "print {\"threads\", \"blas\", \"gemm\" (which library runs float32 GEMMs, and why), \"bf16\" (how bf16 matmuls run), \"cases\": [{name, shape, ms_min, ms_median, ...}]}");
  sub.add_option("--threads", args->threads, "threads for the BLAS (default 1)");
  sub.add_option("--filter", args->filter, "run only the cases whose name contains this");
  sub.add_option("--min-repeats", args->min_repeats, "timed calls per case, at least (default 5)")
      ->check(CLI::Range(1, 1000));
  sub.add_option("--budget-s", args->budget_s, "seconds per case, at least (default 1)")->check(CLI::Range(0.0, 600.0));
  return [args] { return run_bench(*args); };
}

}  // namespace blocklab::cli
