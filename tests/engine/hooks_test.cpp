// Hooks (engine/model.h): patching named activations during a forward and the gradients of named activations,
// against PyTorch 1.13 on committed fixtures (tools/make_hook_fixtures.py: TransformerLens-style hooks that
// overwrite some elements, and retain_grad) in float64; and the engine against itself (a hook that changes
// nothing changes no bit; the norms' internals are read-only; errors are clear).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include "engine/model.h"
#include "engine/params.h"
#include "io/model_file.h"
#include "io/safetensors.h"

namespace blocklab {
namespace {

namespace fs = std::filesystem;

const std::string kDir = std::string(BLOCKLAB_SOURCE_DIR) + "/tests/fixtures/hooks";

std::vector<std::string> cases() {
  std::vector<std::string> names;
  const std::string suffix = ".model.safetensors";
  for (const auto& e : fs::directory_iterator(kDir)) {
    const std::string f = e.path().filename().string();
    if (f.ends_with(suffix)) names.push_back(f.substr(0, f.size() - suffix.size()));
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<double> stored(const io::SafetensorsFile& f, const std::string& name) {
  const io::StoredTensor* t = f.find(name);
  EXPECT_NE(t, nullptr) << "fixture has no " << name;
  return t ? io::to_float_tensor<double>(*t, "fixture").value().data : std::vector<double>{};
}

// max|a - b| / max(1e-30, max|b|): relative to the tensor's scale (1e-9 in float64 is the same math).
double rel_error(const std::vector<double>& got, const std::vector<double>& want) {
  EXPECT_EQ(got.size(), want.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    if (std::isinf(want[i]) && got[i] == want[i]) continue;
    diff = std::max(diff, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

struct Case {
  Model<double> model;
  io::SafetensorsFile io;
  bool lm;
  Tensor<double> x, dy;
  std::vector<int32_t> tokens, targets;
  int64_t B = 0, T = 0;
};

Case load_case(const std::string& name) {
  Result<Model<double>> m = io::load_model<double>(kDir + "/" + name + ".model.safetensors");
  EXPECT_TRUE(m.is_ok()) << m.status().message();
  io::SafetensorsFile f = io::read_safetensors(kDir + "/" + name + ".io.safetensors").value();
  Case c{std::move(m.value()), std::move(f), false, {}, {}, {}, {}};
  c.lm = c.model.config().is_language_model();
  if (c.lm) {
    const io::StoredTensor* t = c.io.find("tokens");
    c.tokens = io::to_int_ids(*t, "fixture").value();
    c.targets = io::to_int_ids(*c.io.find("targets"), "fixture").value();
    c.B = t->shape[0];
    c.T = t->shape[1];
  } else {
    c.x = io::to_float_tensor<double>(*c.io.find("x"), "fixture").value();
    c.dy = io::to_float_tensor<double>(*c.io.find("dy"), "fixture").value();
    c.B = c.x.shape[0];
    c.T = c.x.shape[1];
  }
  return c;
}

// Forward and backward with `hooks` (already set); dx when on x.
void run(Case& c, Tensor<double>* dx) {
  c.model.zero_grads();
  if (c.lm) {
    ASSERT_TRUE(c.model.forward_lm(c.tokens.data(), c.targets.data(), c.B, c.T).is_ok());
    c.model.backward_lm();
  } else {
    Status st = c.model.forward(c.x.ptr(), c.B, c.T);
    ASSERT_TRUE(st.is_ok()) << st.message();
    *dx = Tensor<double>(c.x.shape);
    c.model.backward(c.dy.ptr(), dx->ptr());
  }
}

std::vector<std::string> differentiable(const Case& c) {
  std::vector<std::string> out;
  for (const std::string& n : hook_names(c.model.config(), c.lm))
    if (!hook_is_norm_internal(n)) out.push_back(n);
  return out;
}

class HookParity : public ::testing::TestWithParam<std::string> {};

TEST_P(HookParity, EveryActivationsGradientMatchesRetainGrad) {
  Case c = load_case(GetParam());
  Hooks<double> hooks;
  hooks.grad_names = differentiable(c);
  ASSERT_TRUE(c.model.set_hooks(hooks).is_ok());
  Tensor<double> dx;
  run(c, &dx);
  if (c.lm)
    EXPECT_NEAR(c.model.loss(), stored(c.io, "base.loss")[0], 1e-12);
  else
    EXPECT_LE(rel_error(c.model.output().data, stored(c.io, "base.y")), 1e-12);
  double worst = 0;
  for (const std::string& n : hooks.grad_names) {
    const Tensor<double>* g = c.model.activation_grad(n);
    ASSERT_NE(g, nullptr) << n;
    const io::StoredTensor* want = c.io.find("base.grad." + n);
    ASSERT_NE(want, nullptr) << n;
    EXPECT_EQ(g->shape, want->shape) << n;
    const double err = rel_error(g->data, stored(c.io, "base.grad." + n));
    EXPECT_LE(err, 1e-9) << n;
    worst = std::max(worst, err);
  }
  std::printf("%s: %zu activation gradients, worst relative error %.2e\n", GetParam().c_str(), hooks.grad_names.size(), worst);
}

TEST_P(HookParity, EachActivationPatchedMatchesATorchHookThatOverwritesIt) {
  Case c = load_case(GetParam());
  const std::string first = "blocks.0.hook_resid_pre",
                    last = "blocks." + std::to_string(c.model.config().n_layers - 1) + ".hook_resid_post";
  double worst = 0;
  int patched = 0;
  for (const std::string& target : differentiable(c)) {
    SCOPED_TRACE(target);
    const std::vector<double> mask = stored(c.io, "patch." + target + ".mask");
    const std::vector<double> values = stored(c.io, "patch." + target + ".values");
    int visits = 0;
    Hooks<double> hooks;
    hooks.wants = [&](const std::string& n) { return n == target; };
    hooks.fn = [&](HookPoint<double>& p) {
      ++visits;
      const int64_t n = numel_of(p.shape);
      if (n != int64_t(mask.size())) return Status::error("size");
      for (int64_t i = 0; i < n; ++i)
        if (mask[size_t(i)] != 0) p.data[i] = values[size_t(i)];
      return Status::ok();
    };
    hooks.grad_names = {target, first, last};
    ASSERT_TRUE(c.model.set_hooks(hooks).is_ok());
    Tensor<double> dx;
    run(c, &dx);
    EXPECT_EQ(visits, 1);
    const std::string pre = "patched." + target + ".";
    double err = c.lm ? std::abs(c.model.loss() - stored(c.io, pre + "loss")[0])
                      : rel_error(c.model.output().data, stored(c.io, pre + "y"));
    EXPECT_LE(err, 1e-12) << "output";
    if (!c.lm) err = std::max(err, rel_error(dx.data, stored(c.io, pre + "grad.x")));
    for (const ParamSpec& s : c.model.layout().specs()) {
      const std::vector<double> g(c.model.grads().begin() + s.offset, c.model.grads().begin() + s.offset + s.numel());
      const double e = rel_error(g, stored(c.io, pre + "grad." + s.name));
      EXPECT_LE(e, 1e-9) << "grad." << s.name;
      err = std::max(err, e);
    }
    for (const std::string& n : hooks.grad_names) {
      const Tensor<double>* g = c.model.activation_grad(n);
      ASSERT_NE(g, nullptr) << n;
      const double e = rel_error(g->data, stored(c.io, pre + "wrt." + n));
      EXPECT_LE(e, 1e-9) << "wrt " << n;
      err = std::max(err, e);
    }
    worst = std::max(worst, err);
    ++patched;
  }
  std::printf("%s: %d activations patched, worst relative error %.2e\n", GetParam().c_str(), patched, worst);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HookParity, ::testing::ValuesIn(cases()), [](const auto& info) { return info.param; });

TEST(HookFixtures, CoverBothPlacementsEveryNormAndTheLanguageModel) { EXPECT_EQ(cases().size(), 5u); }

// ---- The engine against itself ------------------------------------------------------------------

ModelConfig small(Placement placement, Norm norm, bool final_norm) {
  ModelConfig c;
  c.d_model = 8;
  c.n_heads = 2;
  c.d_ff = 16;
  c.n_layers = 2;
  c.placement = placement;
  c.norm = norm;
  c.final_norm = final_norm;
  c.causal = true;
  return c;
}

template <typename T>
Model<T> random_model(const ModelConfig& c, uint64_t seed) {
  Model<T> m = Model<T>::create(c).value();
  uint64_t s = seed;
  for (T& p : m.params()) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    p = T(double(int64_t(s >> 33) % 2001 - 1000) / 2000.0);
  }
  return m;
}

std::vector<float> some_input(int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] = float(std::sin(0.7 * double(i)) * 1.3);
  return x;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(Hooks, AHookThatChangesNothingChangesNoBitOfTheForwardOrTheBackward) {
  for (Placement pl : {Placement::pre, Placement::post})
    for (Norm norm : {Norm::layernorm, Norm::rmsnorm, Norm::none}) {
      const ModelConfig cfg = small(pl, norm, norm != Norm::none);
      SCOPED_TRACE(std::string(name_of(pl)) + " " + std::string(name_of(norm)));
      const int64_t B = 2, T = 5, n = B * T * cfg.d_model;
      const std::vector<float> x = some_input(n), dy = some_input(n + 3);
      Model<float> plain = random_model<float>(cfg, 7), hooked = random_model<float>(cfg, 7);
      ASSERT_TRUE(plain.forward(x.data(), B, T).is_ok());
      std::vector<float> dx_plain(static_cast<size_t>(n)), dx_hooked(static_cast<size_t>(n));
      plain.backward(dy.data(), dx_plain.data());
      Hooks<float> hooks;
      int visits = 0;
      hooks.wants = [](const std::string&) { return true; };  // every name, the attention in three stages
      hooks.fn = [&](HookPoint<float>&) { ++visits; return Status::ok(); };
      for (const std::string& name : hook_names(cfg, false))
        if (!hook_is_norm_internal(name)) hooks.grad_names.push_back(name);
      ASSERT_TRUE(hooked.set_hooks(hooks).is_ok());
      ASSERT_TRUE(hooked.forward(x.data(), B, T).is_ok());
      hooked.backward(dy.data(), dx_hooked.data());
      EXPECT_EQ(visits, int(hook_names(cfg, false).size()));
      EXPECT_TRUE(same_bits(plain.output().data, hooked.output().data));
      EXPECT_TRUE(same_bits(dx_plain, dx_hooked));
      EXPECT_TRUE(same_bits(plain.grads(), hooked.grads()));
      // the kept gradient of the first block's input is dx; of the last block's output, dy (no final norm)
      EXPECT_TRUE(same_bits(hooked.activation_grad("blocks.0.hook_resid_pre")->data, dx_plain));
      if (!cfg.final_norm) {
        EXPECT_TRUE(same_bits(hooked.activation_grad("blocks.1.hook_resid_post")->data, std::vector<float>(dy.begin(), dy.begin() + n)));
      }
      // hooks off again: the plain path
      hooked.clear_hooks();
      ASSERT_TRUE(hooked.forward(x.data(), B, T).is_ok());
      EXPECT_TRUE(same_bits(plain.output().data, hooked.output().data));
      EXPECT_EQ(hooked.activation_grad("blocks.0.hook_resid_pre"), nullptr);
    }
}

TEST(Hooks, NamesAreTheTracesInTheSameOrder) {
  for (Placement pl : {Placement::pre, Placement::post})
    for (Norm norm : {Norm::layernorm, Norm::rmsnorm, Norm::none})
      for (bool lm : {false, true}) {
        ModelConfig cfg = small(pl, norm, norm != Norm::none);
        if (lm) {
          cfg.vocab_size = 7;
          cfg.max_seq_len = 6;
        }
        Model<double> m = random_model<double>(cfg, 3);
        const int64_t B = 1, T = 3;
        if (lm) {
          const std::vector<int32_t> tokens = {1, 4, 6};
          ASSERT_TRUE(m.forward_lm(tokens.data(), nullptr, B, T).is_ok());
        } else {
          std::vector<double> x(size_t(B * T * cfg.d_model), 0.25);
          ASSERT_TRUE(m.forward(x.data(), B, T).is_ok());
        }
        std::vector<std::string> traced, hooked;
        for (const NamedTensor<double>& t : m.trace(true)) traced.push_back(t.name);
        for (const std::string& n : hook_names(cfg, lm))
          if (!n.ends_with("attn.hook_result")) hooked.push_back(n);  // a hook point only
        EXPECT_EQ(hooked, traced);
      }
}

TEST(Hooks, TheNormsInternalsAreReadOnly) {
  Model<double> m = random_model<double>(small(Placement::pre, Norm::layernorm, false), 5);
  std::vector<double> x(2 * 3 * 8, 0.5);
  for (size_t i = 0; i < x.size(); ++i) x[i] = double(i % 7) - 3;
  for (const char* name : {"blocks.0.ln1.hook_mean", "blocks.0.ln1.hook_rstd", "blocks.1.ln2.hook_normalized"}) {
    Hooks<double> h;
    std::vector<double> seen;
    h.wants = [&](const std::string& n) { return n == name; };
    h.fn = [&](HookPoint<double>& p) {
      seen.assign(p.data, p.data + numel_of(p.shape));
      p.data[0] += 1;
      return Status::ok();
    };
    ASSERT_TRUE(m.set_hooks(h).is_ok());
    Status st = m.forward(x.data(), 2, 3);
    ASSERT_FALSE(st.is_ok()) << name;
    EXPECT_NE(st.message().find(std::string("hook ") + name + ": computed inside its norm"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("hook_out instead"), std::string::npos) << st.message();
    EXPECT_FALSE(seen.empty());  // read: it was visited with its values
  }
}

TEST(Hooks, ClearErrors) {
  Model<double> m = random_model<double>(small(Placement::post, Norm::layernorm, false), 5);
  Hooks<double> h;
  h.grad_names = {"blocks.0.hook_resid_mdi"};
  Status st = m.set_hooks(h);
  ASSERT_FALSE(st.is_ok());
  EXPECT_EQ(st.message(), "wrt: expected an activation name of this model (docs/trace.md), got \"blocks.0.hook_resid_mdi\"");
  h.grad_names = {"blocks.0.ln1.hook_rstd"};
  st = m.set_hooks(h);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("has no gradient here"), std::string::npos);
  h.grad_names = {"hook_embed"};  // not a language model
  EXPECT_FALSE(m.set_hooks(h).is_ok());

  // A hook's own error stops the forward with it.
  h = {};
  h.wants = [](const std::string& n) { return n == "blocks.1.mlp.hook_post"; };
  h.fn = [](HookPoint<double>& p) { return Status::error("hook " + p.name + ": shape mismatch"); };
  ASSERT_TRUE(m.set_hooks(h).is_ok());
  std::vector<double> x(1 * 2 * 8, 0.5);
  st = m.forward(x.data(), 1, 2);
  ASSERT_FALSE(st.is_ok());
  EXPECT_EQ(st.message(), "hook blocks.1.mlp.hook_post: shape mismatch");

  // No dropout with hooks.
  ModelConfig c = small(Placement::pre, Norm::layernorm, false);
  c.dropout = 0.1;
  Model<double> d = random_model<double>(c, 5);
  ASSERT_TRUE(d.set_hooks(Hooks<double>{}).is_ok());
  ForwardOptions training;
  training.training = true;
  st = d.forward(x.data(), 1, 2, training);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("without dropout"), std::string::npos);
  EXPECT_TRUE(d.forward(x.data(), 1, 2).is_ok());  // not training: no dropout
}

// Post placement: patching mlp.hook_in changes the FFN's input only, not the stream that is added to its output.
TEST(Hooks, PatchingTheFfnsInputLeavesTheStreamAlone) {
  for (Placement pl : {Placement::post, Placement::pre}) {
    ModelConfig cfg = small(pl, pl == Placement::post ? Norm::layernorm : Norm::none, false);
    cfg.n_layers = 1;
    Model<double> m = random_model<double>(cfg, 11);
    std::vector<double> x(1 * 3 * 8);
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(double(i));
    Hooks<double> h;
    std::vector<double> mid_seen, mid_after;
    h.wants = [](const std::string& n) { return n == "blocks.0.mlp.hook_in" || n == "blocks.0.hook_resid_mid"; };
    h.fn = [&](HookPoint<double>& p) {
      if (p.name == "blocks.0.hook_resid_mid") mid_seen.assign(p.data, p.data + numel_of(p.shape));
      if (p.name == "blocks.0.mlp.hook_in") std::fill(p.data, p.data + numel_of(p.shape), 0.0);
      return Status::ok();
    };
    ASSERT_TRUE(m.set_hooks(h).is_ok());
    ASSERT_TRUE(m.forward(x.data(), 1, 3).is_ok());
    const auto& a = m.block_acts(0);
    EXPECT_EQ(a.resid_mid.data, mid_seen);  // the stream kept its values
    // the FFN saw zeros: its pre-activation is linear1's bias in every row
    const int64_t f = cfg.d_ff;
    for (int64_t r = 0; r < 3; ++r)
      for (int64_t j = 0; j < f; ++j)
        EXPECT_EQ(a.mlp_pre.data[size_t(r * f + j)], a.mlp_pre.data[size_t(j)]);
  }
}

}  // namespace
}  // namespace blocklab
