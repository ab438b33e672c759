// The model: whole stacks against finite differences in float64 for every configuration of the
// contract, the language model, dropout, initialisation, and the trace's names and shapes.
#include "engine/model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "engine/blas.h"
#include "engine/kernels.h"
#include "gradcheck.h"

namespace blocklab {
namespace {

using testing::dot;
using testing::expect_gradient_close;
using testing::numeric_gradient;
using testing::random_vector;
using Vec = std::vector<double>;

ModelConfig small_config() {
  ModelConfig c;
  c.d_model = 4;
  c.n_heads = 2;
  c.d_ff = 8;
  c.n_layers = 2;
  return c;
}

// Random parameters with norms' weights near 1, so that gamma and beta matter.
void randomize(Model<double>& m, uint64_t seed) {
  Vec r = random_vector(m.params().size(), seed, 0.5);
  for (const ParamSpec& s : m.layout().specs())
    for (int64_t i = 0; i < s.numel(); ++i) {
      double& p = m.params()[size_t(s.offset + i)];
      p = r[size_t(s.offset + i)];
      if (s.name.find("norm") != std::string::npos && s.name.ends_with("weight")) p = 1 + 0.4 * p;
    }
}

// d sum(y * dy) / d(x and every parameter), analytic vs numeric.
void check_stack_gradients(const ModelConfig& config, const ForwardOptions& options = {}) {
  Result<Model<double>> created = Model<double>::create(config);
  ASSERT_TRUE(created.is_ok()) << created.status().message();
  Model<double>& m = created.value();
  randomize(m, 3);
  const int64_t B = 2, T = 3, d = config.d_model;
  Vec x = random_vector(static_cast<size_t>(B * T * d), 4);
  const Vec dy = random_vector(size_t(B * T * d), 5);
  auto loss = [&] {
    EXPECT_TRUE(m.forward(x.data(), B, T, options).is_ok());
    return dot(m.output().data, dy);
  };
  ASSERT_TRUE(m.forward(x.data(), B, T, options).is_ok());
  m.zero_grads();
  Vec dx(x.size());
  m.backward(dy.data(), dx.data());
  const Vec analytic = m.grads();
  expect_gradient_close("grad.x", dx, numeric_gradient(x, loss));
  const Vec numeric = numeric_gradient(m.params(), loss);
  for (const ParamSpec& s : m.layout().specs())
    expect_gradient_close("grad." + s.name, Vec(analytic.begin() + s.offset, analytic.begin() + s.offset + s.numel()),
                          Vec(numeric.begin() + s.offset, numeric.begin() + s.offset + s.numel()));
}

// ---- Every configuration: norm x placement x activation x residual x causal x final norm -----

struct StackCase {
  Norm norm;
  Placement placement;
  Activation activation;
  int residual;  // 0: on with alpha 1, 1: on with alpha 0.7, 2: off
  bool causal;
  bool final_norm;
};

std::string case_name(const StackCase& c) {
  const char* res[] = {"res1", "res07", "nores"};
  return std::string(name_of(c.norm)) + "_" + std::string(name_of(c.placement)) + "_" +
         std::string(name_of(c.activation)) + "_" + res[c.residual] + (c.causal ? "_causal" : "_full") +
         (c.final_norm ? "_final" : "_nofinal");
}

ModelConfig config_of(const StackCase& c) {
  ModelConfig config = small_config();
  config.norm = c.norm;
  config.placement = c.placement;
  config.activation = c.activation;
  config.residual = c.residual != 2;
  config.residual_alpha = c.residual == 1 ? 0.7 : 1.0;
  config.causal = c.causal;
  config.final_norm = c.final_norm;
  return config;
}

std::vector<StackCase> all_stack_cases() {
  std::vector<StackCase> out;
  for (Norm n : {Norm::layernorm, Norm::rmsnorm, Norm::none})
    for (Placement p : {Placement::pre, Placement::post})
      for (Activation a : {Activation::relu, Activation::gelu, Activation::gelu_tanh})
        for (int r : {0, 1, 2})
          for (bool causal : {false, true})
            for (bool final_norm : {false, true})
              if (!(n == Norm::none && final_norm)) out.push_back({n, p, a, r, causal, final_norm});
  return out;
}

class StackGradient : public ::testing::TestWithParam<StackCase> {};

TEST_P(StackGradient, MatchesFiniteDifferences) { check_stack_gradients(config_of(GetParam())); }

INSTANTIATE_TEST_SUITE_P(AllConfigs, StackGradient, ::testing::ValuesIn(all_stack_cases()),
                         [](const auto& info) { return case_name(info.param); });

TEST(StackGradientCount, CoversTheContractsConfigurations) {
  // 3 norms x 2 placements x 3 activations x 3 residual modes x 2 causal x 2 final norm, less
  // norm "none" with a final norm (a bad config).
  EXPECT_EQ(all_stack_cases().size(), 3u * 2 * 3 * 3 * 2 * 2 - 2 * 3 * 3 * 2);
}

TEST(StackGradientDropout, TrainingWithDropoutMatchesFiniteDifferences) {
  // The masks are a function of the seed, so the finite differences see the same masks.
  for (Placement p : {Placement::pre, Placement::post}) {
    ModelConfig c = small_config();
    c.placement = p;
    c.dropout = 0.3;
    check_stack_gradients(c, ForwardOptions{true, 1234});
  }
}

// ---- Language model ----------------------------------------------------------------------------

TEST(LanguageModel, GradientsMatchFiniteDifferences) {
  ModelConfig c = small_config();
  c.vocab_size = 5;
  c.final_norm = true;
  c.causal = true;
  Model<double> m = std::move(Model<double>::create(c).value());
  randomize(m, 8);
  const std::vector<int32_t> tokens = {0, 4, 2, 2, 1, 3}, targets = {4, 2, 2, 1, 3, 0};
  auto loss = [&] {
    EXPECT_TRUE(m.forward_lm(tokens.data(), targets.data(), 2, 3).is_ok());
    return m.loss();
  };
  loss();
  m.zero_grads();
  m.backward_lm();
  const Vec analytic = m.grads();
  const Vec numeric = numeric_gradient(m.params(), loss);
  for (const ParamSpec& s : m.layout().specs())
    expect_gradient_close("grad." + s.name, Vec(analytic.begin() + s.offset, analytic.begin() + s.offset + s.numel()),
                          Vec(numeric.begin() + s.offset, numeric.begin() + s.offset + s.numel()));
}

TEST(LanguageModel, PositionEmbeddingGradientsMatchFiniteDifferences) {
  ModelConfig c = small_config();
  c.vocab_size = 5;
  c.max_seq_len = 4;
  Model<double> m = std::move(Model<double>::create(c).value());
  randomize(m, 9);
  const std::vector<int32_t> tokens = {0, 4, 2, 2, 1, 3}, targets = {4, 2, 2, 1, 3, 0};
  auto loss = [&] {
    EXPECT_TRUE(m.forward_lm(tokens.data(), targets.data(), 2, 3).is_ok());
    return m.loss();
  };
  loss();
  m.zero_grads();
  m.backward_lm();
  const ParamSpec* pos = m.layout().find("pos_embed.weight");
  ASSERT_NE(pos, nullptr);
  const Vec analytic = m.grads();
  const Vec numeric = numeric_gradient(m.params(), loss);
  expect_gradient_close("grad.pos_embed.weight", Vec(analytic.begin() + pos->offset, analytic.begin() + pos->offset + pos->numel()),
                        Vec(numeric.begin() + pos->offset, numeric.begin() + pos->offset + pos->numel()));
  // Row 3 (position 3) is never used by sequences of 3 tokens.
  for (int64_t i = 3 * 4; i < 4 * 4; ++i) EXPECT_EQ(analytic[size_t(pos->offset + i)], 0.0);
  // Positions break the permutation symmetry: the same token at two positions gets two outputs.
  ASSERT_TRUE(m.forward_lm(std::vector<int32_t>{2, 2, 2}.data(), nullptr, 1, 3).is_ok());
  EXPECT_NE(m.logits().data[0], m.logits().data[5]);
  EXPECT_FALSE(m.forward_lm(std::vector<int32_t>{1, 1, 1, 1, 1}.data(), nullptr, 1, 5).is_ok());  // > max_seq_len
  c.vocab_size.reset();
  EXPECT_FALSE(validate(c).is_ok());  // positions belong to the language model
}

// GPT-2's tied head (tied_head): logits = y embed.weight^T, no head tensors; the embedding's gradient is the sum
// of its two uses (the lookup and the head).
TEST(LanguageModel, TiedHeadGradientsMatchFiniteDifferences) {
  ModelConfig c = small_config();
  c.vocab_size = 5;
  c.max_seq_len = 4;
  c.final_norm = true;
  c.causal = true;
  c.activation = Activation::gelu_tanh;
  c.tied_head = true;
  Model<double> m = std::move(Model<double>::create(c).value());
  EXPECT_EQ(m.layout().find("head.weight"), nullptr);
  EXPECT_EQ(m.layout().find("head.bias"), nullptr);
  ModelConfig untied = c;
  untied.tied_head = false;
  EXPECT_EQ(m.layout().total(), ParamLayout(untied).total() - 5 * 4 - 5);
  EXPECT_EQ(parameter_count(c).value(), m.layout().total());
  randomize(m, 10);
  const std::vector<int32_t> tokens = {0, 4, 2, 2, 1, 3}, targets = {4, 2, 2, 1, 3, 0};
  auto loss = [&] {
    EXPECT_TRUE(m.forward_lm(tokens.data(), targets.data(), 2, 3).is_ok());
    return m.loss();
  };
  loss();
  // The head is embed.weight: logits[n, v] = y[n] . embed[v].
  const int64_t d = c.d_model;
  const double* embed = m.params().data() + m.layout().embed_weight();
  for (int64_t v = 0; v < 5; ++v) {
    double dot_v = 0;
    for (int64_t k = 0; k < d; ++k) dot_v += m.output().data[size_t(k)] * embed[v * d + k];
    EXPECT_NEAR(m.logits().data[size_t(v)], dot_v, 1e-12);
  }
  m.zero_grads();
  m.backward_lm();
  const Vec analytic = m.grads();
  const Vec numeric = numeric_gradient(m.params(), loss);
  for (const ParamSpec& s : m.layout().specs())
    expect_gradient_close("grad." + s.name, Vec(analytic.begin() + s.offset, analytic.begin() + s.offset + s.numel()),
                          Vec(numeric.begin() + s.offset, numeric.begin() + s.offset + s.numel()));
  c.vocab_size.reset();
  c.max_seq_len.reset();
  EXPECT_EQ(validate(c).message(),
            "config key 'tied_head': expected false when vocab_size is null (the head belongs to the language model), got true");
}

TEST(LanguageModel, GradientsAreAllocatedByTheFirstBackward) {
  ModelConfig c = small_config();
  c.vocab_size = 5;
  Model<float> m = std::move(Model<float>::create(c).value());
  const Model<float>& view = m;
  const std::vector<int32_t> tokens = {0, 4, 2}, targets = {4, 2, 2};
  ASSERT_TRUE(m.forward_lm(tokens.data(), targets.data(), 1, 3).is_ok());
  EXPECT_TRUE(view.grads().empty());  // a forward alone holds no gradient buffer
  m.backward_lm();
  EXPECT_EQ(view.grads().size(), m.params().size());
}

TEST(LanguageModel, RejectsTokensOutsideTheVocabulary) {
  ModelConfig c = small_config();
  c.vocab_size = 5;
  Model<float> m = std::move(Model<float>::create(c).value());
  const std::vector<int32_t> tokens = {0, 5};
  Status st = m.forward_lm(tokens.data(), nullptr, 1, 2);
  ASSERT_FALSE(st.is_ok());
  EXPECT_EQ(st.message(), "tokens[1]: expected an id in 0..4, got 5");
}

// ---- Config ------------------------------------------------------------------------------------

TEST(Config, RejectsImpossibleValuesNamingTheKey) {
  ModelConfig c;
  c.n_heads = 5;
  EXPECT_EQ(validate(c).message(), "config key 'n_heads': expected a divisor of d_model 64, got 5");
  c = {};
  c.norm = Norm::none;
  c.final_norm = true;
  EXPECT_EQ(validate(c).message(), "config key 'final_norm': expected false when norm is \"none\", got true");
  c = {};
  c.dropout = 1.0;
  EXPECT_FALSE(validate(c).is_ok());
  c = {};
  c.eps = 0;
  EXPECT_FALSE(validate(c).is_ok());
  EXPECT_FALSE(Model<float>::create(c).is_ok());
}

TEST(Config, SetConfigKeepsTheLayoutOrRefuses) {
  Model<double> m = std::move(Model<double>::create(small_config()).value());
  ModelConfig c = small_config();
  c.residual_alpha = 0.3;
  c.placement = Placement::post;
  EXPECT_TRUE(m.set_config(c).is_ok());
  c.norm = Norm::rmsnorm;  // drops the norms' biases
  EXPECT_FALSE(m.set_config(c).is_ok());
}

// ---- Forward semantics -------------------------------------------------------------------------

TEST(Forward, AlphaZeroMakesEachBlockTheIdentity) {
  ModelConfig c = small_config();
  c.residual_alpha = 0;
  Model<double> m = std::move(Model<double>::create(c).value());
  randomize(m, 1);
  const Vec x = random_vector(2 * 3 * 4, 2);
  ASSERT_TRUE(m.forward(x.data(), 2, 3).is_ok());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_DOUBLE_EQ(m.output().data[i], x[i]);
}

TEST(Forward, CausalOutputAtAPositionIgnoresLaterTokens) {
  ModelConfig c = small_config();
  c.causal = true;
  Model<double> m = std::move(Model<double>::create(c).value());
  randomize(m, 1);
  Vec x = random_vector(1 * 3 * 4, 2);
  ASSERT_TRUE(m.forward(x.data(), 1, 3).is_ok());
  const Vec before = m.output().data;
  x[2 * 4 + 1] += 1.0;  // change the last token only
  ASSERT_TRUE(m.forward(x.data(), 1, 3).is_ok());
  for (int i = 0; i < 8; ++i) EXPECT_DOUBLE_EQ(m.output().data[size_t(i)], before[size_t(i)]);
  EXPECT_NE(m.output().data[9], before[9]);
}

TEST(Forward, FloatAgreesWithDouble) {
  ModelConfig c = small_config();
  c.d_model = 32;
  c.d_ff = 64;
  c.n_heads = 4;
  c.final_norm = true;
  Model<double> md = std::move(Model<double>::create(c).value());
  Model<float> mf = std::move(Model<float>::create(c).value());
  init_parameters(md.layout(), 5, md.params().data());
  init_parameters(mf.layout(), 5, mf.params().data());
  const Vec x = random_vector(2 * 7 * 32, 3);
  const std::vector<float> xf(x.begin(), x.end());
  ASSERT_TRUE(md.forward(x.data(), 2, 7).is_ok());
  ASSERT_TRUE(mf.forward(xf.data(), 2, 7).is_ok());
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(md.output().data[i] - mf.output().data[i]));
  EXPECT_LT(worst, 1e-4);
}

// At a width where the linear layers' products pass kOneDnnMinMultiplyAdds, float32 on each GEMM library
// (OpenBLAS; oneDNN, where the CPU would choose it) agrees with float64: output, input gradient and every
// parameter gradient. Each library repeats its own bits.
TEST(Forward, FloatOnEitherGemmLibraryAgreesWithDouble) {
  ModelConfig c;
  c.d_model = 128;
  c.n_heads = 4;
  c.d_ff = 512;
  c.n_layers = 2;
  c.final_norm = true;
  const int64_t B = 4, T = 32, n = B * T * c.d_model;
  ASSERT_GE(B * T * c.d_model * c.d_ff, kOneDnnMinMultiplyAdds);
  Model<double> md = std::move(Model<double>::create(c).value());
  init_parameters(md.layout(), 5, md.params().data());
  const Vec x = random_vector(size_t(n), 3), dy = random_vector(size_t(n), 4);
  Vec dxd(static_cast<size_t>(n));
  ASSERT_TRUE(md.forward(x.data(), B, T).is_ok());
  md.backward(dy.data(), dxd.data(), Model<double>::Grads::overwrite);
  auto scale = [](const auto& v) {
    double s = 0;
    for (auto e : v) s = std::max(s, std::abs(double(e)));
    return std::max(s, 1e-30);
  };
  auto worst = [](const auto& a, const auto& b) {
    double w = 0;
    for (size_t i = 0; i < a.size(); ++i) w = std::max(w, std::abs(double(a[i]) - double(b[i])));
    return w;
  };
  const std::vector<float> xf(x.begin(), x.end()), dyf(dy.begin(), dy.end());
  for (GemmLibrary library : {GemmLibrary::openblas, GemmLibrary::onednn}) {
    SCOPED_TRACE(std::string(name_of(library)));
    const ScopedGemmLibrary on(library);
    Model<float> mf = std::move(Model<float>::create(c).value());
    init_parameters(mf.layout(), 5, mf.params().data());
    std::vector<float> y[2], dx[2], grads[2];
    for (int run = 0; run < 2; ++run) {
      dx[run].assign(size_t(n), 0.f);
      ASSERT_TRUE(mf.forward(xf.data(), B, T).is_ok());
      y[run] = mf.output().data;
      mf.backward(dyf.data(), dx[run].data(), Model<float>::Grads::overwrite);
      grads[run] = mf.grads();
    }
    EXPECT_EQ(y[0], y[1]);
    EXPECT_EQ(dx[0], dx[1]);
    EXPECT_EQ(grads[0], grads[1]);
    EXPECT_LT(worst(y[0], md.output().data) / scale(md.output().data), 1e-5);
    EXPECT_LT(worst(dx[0], dxd) / scale(dxd), 1e-5);
    for (const ParamSpec& s : md.layout().specs()) {
      const auto begin = size_t(s.offset), end = size_t(s.offset + s.numel());
      const Vec want(md.grads().begin() + begin, md.grads().begin() + end);
      const std::vector<float> got(grads[0].begin() + begin, grads[0].begin() + end);
      EXPECT_LT(worst(got, want) / scale(want), 1e-4) << s.name;
    }
  }
}

// ---- Dropout -----------------------------------------------------------------------------------

TEST(Dropout, OnlyInTrainingAndReproduciblePerSeed) {
  ModelConfig c = small_config();
  c.dropout = 0.5;
  Model<double> m = std::move(Model<double>::create(c).value());
  randomize(m, 1);
  const Vec x = random_vector(2 * 3 * 4, 2);
  auto run = [&](ForwardOptions o) {
    EXPECT_TRUE(m.forward(x.data(), 2, 3, o).is_ok());
    return m.output().data;
  };
  const Vec eval1 = run({}), eval2 = run({false, 99});
  EXPECT_EQ(eval1, eval2);  // forward never applies dropout outside training
  ModelConfig no_dropout = c;
  no_dropout.dropout = 0;
  ASSERT_TRUE(m.set_config(no_dropout).is_ok());
  EXPECT_EQ(run({true, 1}), eval1);
  ASSERT_TRUE(m.set_config(c).is_ok());
  const Vec a = run({true, 1}), b = run({true, 1}), d = run({true, 2});
  EXPECT_EQ(a, b);
  EXPECT_NE(a, d);
  EXPECT_NE(a, eval1);
}

// ---- Initialisation ------------------------------------------------------------------------------

TEST(Init, FollowsPyTorchDefaultsAndIsDeterministic) {
  ModelConfig c;  // d 64, d_ff 256, 2 layers
  c.vocab_size = 10;
  c.final_norm = true;
  Model<float> a = std::move(Model<float>::create(c).value());
  Model<float> b = std::move(Model<float>::create(c).value());
  init_parameters(a.layout(), 7, a.params().data());
  init_parameters(b.layout(), 7, b.params().data());
  EXPECT_EQ(a.params(), b.params());
  init_parameters(b.layout(), 8, b.params().data());
  EXPECT_NE(a.params(), b.params());
  auto values = [&](const std::string& name) {
    const ParamSpec* s = a.layout().find(name);
    return std::vector<float>(a.params().begin() + s->offset, a.params().begin() + s->offset + s->numel());
  };
  auto max_abs = [](const std::vector<float>& v) {
    float m = 0;
    for (float x : v) m = std::max(m, std::abs(x));
    return m;
  };
  const double xavier = std::sqrt(6.0 / (64 + 192));
  EXPECT_LE(max_abs(values("layers.0.self_attn.in_proj_weight")), xavier);
  EXPECT_GT(max_abs(values("layers.0.self_attn.in_proj_weight")), 0.95 * xavier);
  EXPECT_EQ(max_abs(values("layers.0.self_attn.in_proj_bias")), 0.f);
  EXPECT_EQ(max_abs(values("layers.1.self_attn.out_proj.bias")), 0.f);
  EXPECT_LE(max_abs(values("layers.0.linear1.weight")), 1 / 8.0);          // 1/sqrt(64)
  EXPECT_LE(max_abs(values("layers.0.linear2.weight")), 1 / 16.0);         // 1/sqrt(256)
  EXPECT_GT(max_abs(values("layers.0.linear2.bias")), 0.5 / 16.0);
  EXPECT_EQ(values("layers.1.norm2.weight"), std::vector<float>(64, 1.f));
  EXPECT_EQ(values("norm.bias"), std::vector<float>(64, 0.f));
  EXPECT_NE(values("layers.0.linear1.weight"), values("layers.1.linear1.weight"));  // layers drawn apart
  const std::vector<float> e = values("embed.weight");
  double mean = 0, sq = 0;
  for (float v : e) mean += v / e.size();
  for (float v : e) sq += (v - mean) * (v - mean) / e.size();
  EXPECT_NEAR(mean, 0, 0.15);
  EXPECT_NEAR(std::sqrt(sq), 1, 0.15);  // N(0, 1)
}

TEST(Init, SharedTensorsGetTheSameValuesAcrossConfigs) {
  // Tensors are keyed by name: switching the norm keeps every linear weight, so ablations compare
  // the same starting point.
  ModelConfig c1, c2;
  c2.norm = Norm::none;
  Model<float> a = std::move(Model<float>::create(c1).value());
  Model<float> b = std::move(Model<float>::create(c2).value());
  init_parameters(a.layout(), 3, a.params().data());
  init_parameters(b.layout(), 3, b.params().data());
  const ParamSpec* sa = a.layout().find("layers.1.linear2.weight");
  const ParamSpec* sb = b.layout().find("layers.1.linear2.weight");
  EXPECT_TRUE(std::equal(a.params().begin() + sa->offset, a.params().begin() + sa->offset + sa->numel(),
                         b.params().begin() + sb->offset));
}

// ---- Trace ---------------------------------------------------------------------------------------

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "blocks.12.ln1.hook_out" -> "blocks.{i}.ln1.hook_out"
std::string generic_name(const std::string& name) {
  if (!name.starts_with("blocks.")) return name;
  const size_t dot = name.find('.', 7);
  return "blocks.{i}" + name.substr(dot);
}

TEST(Trace, EveryNameIsDocumentedAndShapesFollowTheInput) {
  const std::string doc = read_file(std::string(BLOCKLAB_SOURCE_DIR) + "/docs/trace.md");
  ASSERT_FALSE(doc.empty());
  for (Placement p : {Placement::pre, Placement::post}) {
    for (Norm n : {Norm::layernorm, Norm::rmsnorm, Norm::none}) {
      ModelConfig c = small_config();
      c.placement = p;
      c.norm = n;
      c.final_norm = n != Norm::none;
      c.vocab_size = 5;
      c.max_seq_len = 3;
      Model<double> m = std::move(Model<double>::create(c).value());
      const std::vector<int32_t> tokens = {1, 2, 3};
      ASSERT_TRUE(m.forward_lm(tokens.data(), nullptr, 1, 3).is_ok());
      std::set<std::string> seen;
      for (bool batched : {true, false}) {
        for (const NamedTensor<double>& t : m.trace(batched)) {
          const std::string generic = generic_name(t.name);
          EXPECT_NE(doc.find("`" + generic + "`"), std::string::npos) << t.name << " is not in docs/trace.md";
          EXPECT_TRUE(seen.insert(t.name + (batched ? "" : "/u")).second) << "duplicate " << t.name;
          EXPECT_EQ(numel_of(t.tensor.shape), t.tensor.numel()) << t.name;
          EXPECT_EQ(t.tensor.shape[0], batched ? 1 : (t.name.ends_with("scores") || t.name.ends_with("pattern") ? 2 : 3))
              << t.name;
        }
      }
      const bool has_mean = seen.count("blocks.0.ln1.hook_mean");
      EXPECT_EQ(has_mean, n == Norm::layernorm);
      EXPECT_EQ(seen.count("blocks.1.hook_sum2") > 0, p == Placement::post);
      EXPECT_EQ(seen.count("ln_final.hook_out") > 0, n != Norm::none);
    }
  }
}

TEST(Trace, ResidualStreamLinksBlocks) {
  Model<double> m = std::move(Model<double>::create(small_config()).value());
  randomize(m, 2);
  const Vec x = random_vector(12, 1);
  ASSERT_TRUE(m.forward(x.data(), 1, 3).is_ok());
  const auto trace = m.trace(true);
  auto get = [&](const std::string& name) {
    for (const auto& t : trace)
      if (t.name == name) return t.tensor.data;
    ADD_FAILURE() << "no " << name;
    return Vec{};
  };
  EXPECT_EQ(get("blocks.0.hook_resid_pre"), x);
  EXPECT_EQ(get("blocks.1.hook_resid_pre"), get("blocks.0.hook_resid_post"));
  EXPECT_EQ(get("blocks.1.hook_resid_post"), m.output().data);
  // pre placement: mid = x + alpha * attn_out
  const Vec pre = get("blocks.0.hook_resid_pre"), f = get("blocks.0.hook_attn_out"), mid = get("blocks.0.hook_resid_mid");
  for (size_t i = 0; i < pre.size(); ++i) EXPECT_NEAR(mid[i], pre[i] + f[i], 1e-15);
}

TEST(Backward, OverwriteModeEqualsAccumulatingFromZeroAndIgnoresWhatWasThere) {
  for (auto [p, tied] : {std::pair{Placement::pre, false}, std::pair{Placement::post, false}, std::pair{Placement::pre, true}}) {
    ModelConfig c = small_config();
    c.placement = p;
    c.tied_head = tied;
    c.vocab_size = 5;
    c.max_seq_len = 3;
    c.final_norm = true;
    c.alpha_learnable = true;
    Model<double> m = std::move(Model<double>::create(c).value());
    randomize(m, 4);
    const std::vector<int32_t> tokens = {0, 4, 2, 2, 1, 3}, targets = {4, 2, 2, 1, 3, 0};
    ASSERT_TRUE(m.forward_lm(tokens.data(), targets.data(), 2, 3).is_ok());
    m.zero_grads();
    m.backward_lm();
    const Vec accumulated = m.grads();
    std::fill(m.grads().begin(), m.grads().end(), 123.0);  // garbage
    m.backward_lm(Model<double>::Grads::overwrite);
    EXPECT_EQ(m.grads(), accumulated);
    m.backward_lm();  // and accumulate adds on top
    for (size_t i = 0; i < accumulated.size(); ++i)
      EXPECT_NEAR(m.grads()[i], 2 * accumulated[i], 1e-12 * std::max(1.0, std::abs(accumulated[i])));
  }
}

TEST(Backward, ResidPreGradientsAreTheStreamGradients) {
  Model<double> m = std::move(Model<double>::create(small_config()).value());
  randomize(m, 2);
  const Vec x = random_vector(24, 1), dy = random_vector(24, 3);
  ASSERT_TRUE(m.forward(x.data(), 2, 3).is_ok());
  Vec dx(24);
  m.zero_grads();
  m.backward(dy.data(), dx.data());
  EXPECT_EQ(m.resid_pre_grad(0).data, dx);
  // With residuals, the stream gradient of the last block is dy plus what its sub-layers add.
  EXPECT_NE(m.resid_pre_grad(1).data, dy);
}

}  // namespace
}  // namespace blocklab
