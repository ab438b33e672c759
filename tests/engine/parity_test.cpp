// The engine against PyTorch 1.13 on committed fixtures (tools/make_fixtures.py): for every case,
// y, every trace activation and every gradient; in float64 (to ~1e-12, the same math) and in float32
// (the normal precision: 1e-4 forward, 1e-3 relative gradients, the contract's tolerances).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "engine/kernels.h"
#include "engine/model.h"
#include "io/model_file.h"
#include "io/safetensors.h"

namespace blocklab {
namespace {

namespace fs = std::filesystem;

const std::string kFixtureDir = std::string(BLOCKLAB_SOURCE_DIR) + "/tests/fixtures/parity";

std::vector<std::string> fixture_cases(const std::string& prefix_a, const std::string& prefix_b = "") {
  std::vector<std::string> names;
  const std::string suffix = ".model.safetensors";
  for (const auto& entry : fs::directory_iterator(kFixtureDir)) {
    const std::string f = entry.path().filename().string();
    if (!f.ends_with(suffix)) continue;
    const std::string name = f.substr(0, f.size() - suffix.size());
    if (name.starts_with(prefix_a) || (!prefix_b.empty() && name.starts_with(prefix_b))) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

struct Tolerance {
  double forward;        // |a - b| <= forward * max(1, |b|), elementwise
  double gradient;       // max|a - b| <= gradient * max|b|, per tensor
};
constexpr Tolerance kF64{1e-9, 1e-9};
constexpr Tolerance kF32{1e-4, 1e-3};

template <typename T>
std::vector<double> as_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

std::vector<double> expected(const io::SafetensorsFile& file, const std::string& name) {
  const io::StoredTensor* t = file.find(name);
  EXPECT_NE(t, nullptr) << "fixture has no " << name;
  if (!t) return {};
  return io::to_float_tensor<double>(*t, "fixture").value().data;
}

// Elementwise, relative to max(1, |expected|); equal infinities (masked scores) match.
double worst_forward_error(const std::vector<double>& got, const std::vector<double>& want) {
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isinf(want[i]) && got[i] == want[i]) continue;
    worst = std::max(worst, std::abs(got[i] - want[i]) / std::max(1.0, std::abs(want[i])));
  }
  return worst;
}

double worst_gradient_error(const std::vector<double>& got, const std::vector<double>& want) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff = std::max(diff, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

// Every activation of the engine's trace against the fixture's trace.<name>: the same names, the same
// shapes, each within `tol`. Returns the worst error.
template <typename T>
double check_trace(const Model<T>& model, const io::SafetensorsFile& f, double tol) {
  std::set<std::string> fixture_trace, engine_trace;
  for (const io::StoredTensor& t : f.tensors)
    if (t.name.starts_with("trace.")) fixture_trace.insert(t.name.substr(6));
  double worst = 0;
  for (const NamedTensor<T>& t : model.trace(true)) {
    engine_trace.insert(t.name);
    const io::StoredTensor* want = f.find("trace." + t.name);
    if (!want) {
      ADD_FAILURE() << "PyTorch has no activation " << t.name;
      continue;
    }
    EXPECT_EQ(t.tensor.shape, want->shape) << t.name;
    const double err = worst_forward_error(as_double(t.tensor.data), expected(f, "trace." + t.name));
    EXPECT_LE(err, tol) << t.name;
    worst = std::max(worst, err);
  }
  EXPECT_EQ(engine_trace, fixture_trace);
  return worst;
}

template <typename T>
void check_stack_case(const std::string& name, Tolerance tol) {
  Result<Model<T>> loaded = io::load_model<T>(kFixtureDir + "/" + name + ".model.safetensors");
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  Model<T>& model = loaded.value();
  Result<io::SafetensorsFile> io_file = io::read_safetensors(kFixtureDir + "/" + name + ".io.safetensors");
  ASSERT_TRUE(io_file.is_ok()) << io_file.status().message();
  const io::SafetensorsFile& f = io_file.value();
  const Tensor<T> x = io::to_float_tensor<T>(*f.find("x"), "fixture").value();
  const Tensor<T> dy = io::to_float_tensor<T>(*f.find("dy"), "fixture").value();
  ASSERT_EQ(x.shape.size(), 3u);

  ASSERT_TRUE(model.forward(x.ptr(), x.shape[0], x.shape[1]).is_ok());
  double worst_fwd = worst_forward_error(as_double(model.output().data), expected(f, "y"));
  EXPECT_LE(worst_fwd, tol.forward) << "y";
  worst_fwd = std::max(worst_fwd, check_trace(model, f, tol.forward));

  model.zero_grads();
  Tensor<T> dx(x.shape);
  model.backward(dy.ptr(), dx.ptr());
  double worst_grad = worst_gradient_error(as_double(dx.data), expected(f, "grad.x"));
  EXPECT_LE(worst_grad, tol.gradient) << "grad.x";
  for (const ParamSpec& s : model.layout().specs()) {
    const std::vector<T> g(model.grads().begin() + s.offset, model.grads().begin() + s.offset + s.numel());
    const double err = worst_gradient_error(as_double(g), expected(f, "grad." + s.name));
    EXPECT_LE(err, tol.gradient) << "grad." << s.name;
    worst_grad = std::max(worst_grad, err);
  }
  std::printf("%s (%s): worst forward error %.2e, worst gradient error %.2e\n", name.c_str(),
              sizeof(T) == 8 ? "f64" : "f32", worst_fwd, worst_grad);
}

class StackParity : public ::testing::TestWithParam<std::string> {};

TEST_P(StackParity, Float64MatchesPyTorch) { check_stack_case<double>(GetParam(), kF64); }
TEST_P(StackParity, Float32MatchesPyTorch) { check_stack_case<float>(GetParam(), kF32); }

INSTANTIATE_TEST_SUITE_P(Fixtures, StackParity, ::testing::ValuesIn(fixture_cases("sweep_", "torch_encoder_")),
                         [](const auto& info) { return info.param; });

TEST(ParityFixtures, CoverEveryConfigurationAndTheTorchEncoder) {
  EXPECT_EQ(fixture_cases("sweep_").size(), 180u);
  EXPECT_EQ(fixture_cases("torch_encoder_").size(), 8u);  // pre/post x relu/gelu x causal on/off
}

// The language model (embedding, head, cross-entropy) and three AdamW steps, as torch.optim.AdamW.
template <typename T>
void check_lm_adamw(Tolerance tol, double param_tol) {
  Result<Model<T>> loaded = io::load_model<T>(kFixtureDir + "/lm_adamw.model.safetensors");
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  Model<T>& model = loaded.value();
  const io::SafetensorsFile f = io::read_safetensors(kFixtureDir + "/lm_adamw.io.safetensors").value();
  const io::StoredTensor* tokens_t = f.find("tokens");
  const std::vector<int32_t> tokens = io::to_int_ids(*tokens_t, "fixture").value();
  const std::vector<int32_t> targets = io::to_int_ids(*f.find("targets"), "fixture").value();
  const std::vector<double> h = expected(f, "adamw");
  AdamWHyper hyper{h[0], h[1], h[2], h[3], h[4]};
  std::vector<T> m(model.params().size()), v(model.params().size());
  for (int step = 1; step <= 3; ++step) {
    model.zero_grads();
    ASSERT_TRUE(model.forward_lm(tokens.data(), targets.data(), tokens_t->shape[0], tokens_t->shape[1]).is_ok());
    const double want_loss = expected(f, "step" + std::to_string(step) + ".loss")[0];
    EXPECT_NEAR(model.loss(), want_loss, tol.forward * std::max(1.0, want_loss)) << "step " << step;
    model.backward_lm();
    if (step == 1) {
      EXPECT_LE(worst_forward_error(as_double(model.logits().data), expected(f, "logits")), tol.forward);
      for (const NamedTensor<T>& t : model.trace(true))
        EXPECT_LE(worst_forward_error(as_double(t.tensor.data), expected(f, "trace." + t.name)), tol.forward) << t.name;
      for (const ParamSpec& s : model.layout().specs()) {
        const std::vector<T> g(model.grads().begin() + s.offset, model.grads().begin() + s.offset + s.numel());
        EXPECT_LE(worst_gradient_error(as_double(g), expected(f, "grad." + s.name)), tol.gradient) << s.name;
      }
    }
    adamw_update(model.params().data(), model.grads().data(), m.data(), v.data(), int64_t(m.size()), hyper, step);
    for (const ParamSpec& s : model.layout().specs()) {
      const std::vector<T> p(model.params().begin() + s.offset, model.params().begin() + s.offset + s.numel());
      const std::vector<double> want = expected(f, "step" + std::to_string(step) + "." + s.name);
      const std::vector<double> grad1 = expected(f, "grad." + s.name);
      double worst = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        // A gradient that is exactly 0 in exact math (the key bias: softmax ignores a shift of a whole
        // row) is rounding noise in float32, and Adam divides it by its own size: such a parameter may
        // move by up to lr per step in float32, exactly as in PyTorch's float32.
        const bool noise_only = sizeof(T) == 4 && std::abs(grad1[i]) < 1e-6;
        const double err = std::abs(double(p[i]) - want[i]);
        if (noise_only) EXPECT_LE(err, step * hyper.lr) << s.name << "[" << i << "]";
        else worst = std::max(worst, err);
      }
      EXPECT_LE(worst, param_tol) << "step " << step << " " << s.name;
    }
  }
}

// The language model with a learned position embedding: logits, every activation, loss and gradients.
template <typename T>
void check_lm_positions(Tolerance tol) {
  Model<T> model = io::load_model<T>(kFixtureDir + "/lm_positions.model.safetensors").value();
  const io::SafetensorsFile f = io::read_safetensors(kFixtureDir + "/lm_positions.io.safetensors").value();
  const io::StoredTensor* tokens_t = f.find("tokens");
  const std::vector<int32_t> tokens = io::to_int_ids(*tokens_t, "fixture").value();
  const std::vector<int32_t> targets = io::to_int_ids(*f.find("targets"), "fixture").value();
  model.zero_grads();
  ASSERT_TRUE(model.forward_lm(tokens.data(), targets.data(), tokens_t->shape[0], tokens_t->shape[1]).is_ok());
  EXPECT_NEAR(model.loss(), expected(f, "loss")[0], tol.forward);
  EXPECT_LE(worst_forward_error(as_double(model.logits().data), expected(f, "logits")), tol.forward);
  std::set<std::string> names;
  for (const NamedTensor<T>& t : model.trace(true)) {
    names.insert(t.name);
    EXPECT_LE(worst_forward_error(as_double(t.tensor.data), expected(f, "trace." + t.name)), tol.forward) << t.name;
  }
  EXPECT_TRUE(names.count("hook_pos_embed"));
  model.backward_lm();
  for (const ParamSpec& s : model.layout().specs()) {
    const std::vector<T> g(model.grads().begin() + s.offset, model.grads().begin() + s.offset + s.numel());
    EXPECT_LE(worst_gradient_error(as_double(g), expected(f, "grad." + s.name)), tol.gradient) << s.name;
  }
}

// GPT-2 checkpoints (tools/make_gpt2_fixtures.py: Hugging Face's folder layout, GPT-2's forward written out in
// PyTorch): loaded through io::load_model as any model path is, then logits, loss, every activation, every
// parameter's gradient and every activation's gradient (retain_grad) of the mean cross-entropy.
const std::string kGpt2Dir = std::string(BLOCKLAB_SOURCE_DIR) + "/tests/fixtures/gpt2";

template <typename T>
void check_gpt2(const std::string& name, Tolerance tol) {
  const std::string folder = kGpt2Dir + "/" + name;
  Result<Model<T>> loaded = io::load_model<T>(folder);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  Model<T>& model = loaded.value();
  EXPECT_TRUE(model.config().tied_head);
  const io::SafetensorsFile f = io::read_safetensors(folder + "/expected.safetensors").value();
  const io::StoredTensor* tokens_t = f.find("tokens");
  const std::vector<int32_t> tokens = io::to_int_ids(*tokens_t, "fixture").value();
  const std::vector<int32_t> targets = io::to_int_ids(*f.find("targets"), "fixture").value();
  std::vector<std::string> wrt;  // every activation with a gradient
  for (const std::string& n : hook_names(model.config(), true))
    if (f.find("grad." + n)) wrt.push_back(n);
  // 16 per block (all but the norms' internals) and hook_embed, hook_pos_embed, ln_final.hook_out, hook_logits
  ASSERT_EQ(wrt.size(), 16u * size_t(model.config().n_layers) + 4);
  ASSERT_TRUE(model.forward_lm(tokens.data(), targets.data(), tokens_t->shape[0], tokens_t->shape[1]).is_ok());
  const double want_loss = expected(f, "loss")[0];
  EXPECT_NEAR(model.loss(), want_loss, tol.forward * std::max(1.0, want_loss));
  double worst_fwd = worst_forward_error(as_double(model.logits().data), expected(f, "logits"));
  EXPECT_LE(worst_fwd, tol.forward) << "logits";
  worst_fwd = std::max(worst_fwd, check_trace(model, f, tol.forward));
  std::set<std::string> engine_trace;
  for (const NamedTensor<T>& t : model.trace(true)) engine_trace.insert(t.name);
  EXPECT_TRUE(engine_trace.count("hook_pos_embed") && engine_trace.count("ln_final.hook_out"));
  model.zero_grads();
  model.backward_lm();
  double worst_grad = 0;
  for (const ParamSpec& s : model.layout().specs()) {
    const std::vector<T> g(model.grads().begin() + s.offset, model.grads().begin() + s.offset + s.numel());
    const double err = worst_gradient_error(as_double(g), expected(f, "grad." + s.name));
    EXPECT_LE(err, tol.gradient) << "grad." << s.name;
    worst_grad = std::max(worst_grad, err);
  }
  // The activations' gradients, through the hooks' path (which also keeps its own parameter gradients right).
  Hooks<T> hooks;
  hooks.grad_names = wrt;
  ASSERT_TRUE(model.set_hooks(hooks).is_ok());
  ASSERT_TRUE(model.forward_lm(tokens.data(), targets.data(), tokens_t->shape[0], tokens_t->shape[1]).is_ok());
  model.zero_grads();
  model.backward_lm();
  for (const ParamSpec& s : model.layout().specs()) {
    const std::vector<T> g(model.grads().begin() + s.offset, model.grads().begin() + s.offset + s.numel());
    EXPECT_LE(worst_gradient_error(as_double(g), expected(f, "grad." + s.name)), tol.gradient) << "hooked grad." << s.name;
  }
  for (const std::string& n : wrt) {
    const Tensor<T>* g = model.activation_grad(n);
    ASSERT_NE(g, nullptr) << n;
    const double err = worst_gradient_error(as_double(g->data), expected(f, "grad." + n));
    EXPECT_LE(err, tol.gradient) << "grad." << n;
    worst_grad = std::max(worst_grad, err);
  }
  std::printf("gpt2 %s (%s): %zu activations, %zu parameters; worst forward error %.2e, worst gradient error %.2e\n",
              name.c_str(), sizeof(T) == 8 ? "f64" : "f32", engine_trace.size(), model.layout().specs().size(), worst_fwd,
              worst_grad);
}

TEST(Gpt2Parity, PrefixedFloat64) { check_gpt2<double>("prefixed", kF64); }
TEST(Gpt2Parity, PrefixedFloat32) { check_gpt2<float>("prefixed", kF32); }
TEST(Gpt2Parity, PlainFloat64) { check_gpt2<double>("plain", kF64); }
TEST(Gpt2Parity, PlainFloat32) { check_gpt2<float>("plain", kF32); }

TEST(LanguageModelParity, PositionEmbeddingFloat64) { check_lm_positions<double>(kF64); }
TEST(LanguageModelParity, PositionEmbeddingFloat32) { check_lm_positions<float>(kF32); }

TEST(LanguageModelParity, Float64MatchesPyTorchIncludingAdamW) { check_lm_adamw<double>(kF64, 1e-10); }
TEST(LanguageModelParity, Float32MatchesPyTorchIncludingAdamW) { check_lm_adamw<float>(kF32, 1e-5); }

}  // namespace
}  // namespace blocklab
