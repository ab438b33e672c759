// Every kernel's backward against central finite differences in float64, plus the forward facts
// a reader can check by hand (the seed pages' LayerNorm example, GELU values, softmax rows).
#include "engine/kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <utility>
#include <vector>

#include "engine/blas.h"
#include "engine/kernels_avx2.h"
#include "engine/kernels_avx512.h"
#include "gradcheck.h"

namespace blocklab {
namespace {

using testing::dot;
using testing::expect_gradient_close;
using testing::numeric_gradient;
using testing::random_vector;
using Vec = std::vector<double>;

// ---- Linear ----------------------------------------------------------------------------------

TEST(Linear, ForwardIsXWTransposePlusBias) {
  // x [1, 2] = [1, 2]; W [3, 2]; y = x W^T + b
  const Vec x = {1, 2}, w = {1, 0, 0, 1, 1, 1}, b = {0.5, -0.5, 0};
  Vec y(3);
  linear_forward(y.data(), x.data(), w.data(), b.data(), 1, 2, 3);
  EXPECT_DOUBLE_EQ(y[0], 1.5);
  EXPECT_DOUBLE_EQ(y[1], 1.5);
  EXPECT_DOUBLE_EQ(y[2], 3.0);
}

TEST(Linear, GradientsMatchFiniteDifferences) {
  const int64_t N = 5, IC = 4, OC = 3;
  Vec x = random_vector(N * IC, 1), w = random_vector(OC * IC, 2), b = random_vector(OC, 3);
  const Vec dout = random_vector(N * OC, 4);
  auto loss = [&] {
    Vec y(N * OC);
    linear_forward(y.data(), x.data(), w.data(), b.data(), N, IC, OC);
    return dot(y, dout);
  };
  Vec dx(N * IC), dw(OC * IC), db(OC);
  linear_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), N, IC, OC);
  expect_gradient_close("dx", dx, numeric_gradient(x, loss));
  expect_gradient_close("dweight", dw, numeric_gradient(w, loss));
  expect_gradient_close("dbias", db, numeric_gradient(b, loss));
}

TEST(Linear, BackwardAccumulates) {
  const Vec x = {1, 2}, w = {3, 4}, dout = {1};
  Vec dx = {10, 10}, dw = {1, 1}, db = {5};
  linear_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), 1, 2, 1);
  EXPECT_EQ(dx, (Vec{13, 14}));
  EXPECT_EQ(dw, (Vec{2, 3}));
  EXPECT_EQ(db, (Vec{6}));
}

// ---- LayerNorm -------------------------------------------------------------------------------

TEST(LayerNorm, SeedExampleTokens) {
  // Seed 003: [0.1, 2.3, -1.2] -> mean 0.4, sigma 1.4445 (the page says 1.5);
  //           [5.0, 5.1, 4.9]  -> mean 5.0, sigma 0.08165 (the page says 0.1). Biased variance, eps 1e-5.
  const Vec x = {0.1, 2.3, -1.2, 5.0, 5.1, 4.9}, w = {1, 1, 1}, b = {0, 0, 0};
  Vec out(6), mean(2), rstd(2);
  layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), 2, 3, 1e-5);
  const Vec& normalized = out;  // gamma 1, beta 0
  EXPECT_NEAR(mean[0], 0.4, 1e-12);
  EXPECT_NEAR(mean[1], 5.0, 1e-12);
  // sigma = sqrt(var) is the seed's figure; 1/rstd = sqrt(var + eps) is what divides.
  const double sigma0 = std::sqrt(1 / (rstd[0] * rstd[0]) - 1e-5), sigma1 = std::sqrt(1 / (rstd[1] * rstd[1]) - 1e-5);
  EXPECT_NEAR(sigma0, 1.4445, 5e-5);
  EXPECT_NEAR(sigma0, std::sqrt(6.26 / 3), 1e-12);
  EXPECT_NEAR(sigma1, 0.08165, 5e-6);
  EXPECT_NEAR(sigma1, std::sqrt(0.02 / 3), 1e-12);
  EXPECT_NEAR(1 / rstd[1], 0.081711, 1e-6);  // eps matters for a near-constant token
  // Each normalised row has mean 0 and (biased) variance var / (var + eps).
  for (int r = 0; r < 2; ++r) {
    double s = 0, sq = 0;
    for (int c = 0; c < 3; ++c) {
      s += normalized[r * 3 + c];
      sq += normalized[r * 3 + c] * normalized[r * 3 + c];
    }
    EXPECT_NEAR(s, 0, 1e-12);
    EXPECT_NEAR(sq / 3, 1.0, r == 0 ? 1e-5 : 2e-3);
  }
}

TEST(LayerNorm, GradientsMatchFiniteDifferences) {
  const int64_t N = 4, C = 6;
  Vec x = random_vector(N * C, 1), w = random_vector(C, 2), b = random_vector(C, 3);
  const Vec dout = random_vector(N * C, 4);
  auto loss = [&] {
    Vec out(N * C), mean(N), rstd(N);
    layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5);
    return dot(out, dout);
  };
  Vec out(N * C), mean(N), rstd(N);
  layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5);
  Vec dx(N * C), dw(C), db(C);
  layernorm_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
  expect_gradient_close("dx", dx, numeric_gradient(x, loss));
  expect_gradient_close("dweight", dw, numeric_gradient(w, loss));
  expect_gradient_close("dbias", db, numeric_gradient(b, loss));
}

// ---- RMSNorm ---------------------------------------------------------------------------------

TEST(RMSNorm, ForwardIsXOverRootMeanSquareTimesWeight) {
  const Vec x = {3, 4}, w = {1, 2};
  Vec out(2), rstd(1);
  rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), 1, 2, 0.0 + 1e-12);
  const double rms = std::sqrt(12.5);
  EXPECT_NEAR(rstd[0], 1 / rms, 1e-9);
  EXPECT_NEAR(out[0], 3 / rms, 1e-9);
  EXPECT_NEAR(out[1], 8 / rms, 1e-9);
}

TEST(RMSNorm, GradientsMatchFiniteDifferences) {
  const int64_t N = 4, C = 6;
  Vec x = random_vector(N * C, 1), w = random_vector(C, 2);
  const Vec dout = random_vector(N * C, 4);
  auto run = [&](Vec& out, Vec& rstd) { rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5); };
  auto loss = [&] {
    Vec out(N * C), rstd(N);
    run(out, rstd);
    return dot(out, dout);
  };
  Vec out(N * C), rstd(N);
  run(out, rstd);
  Vec dx(N * C), dw(C);
  rmsnorm_backward(dx.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);
  expect_gradient_close("dx", dx, numeric_gradient(x, loss));
  expect_gradient_close("dweight", dw, numeric_gradient(w, loss));
}

// ---- Activations -----------------------------------------------------------------------------

TEST(Activation, KnownValues) {
  const Vec x = {-1.0, 0.0, 1.0, 2.0};
  Vec y(4);
  activation_forward(Activation::relu, y.data(), x.data(), 4);
  EXPECT_EQ(y, (Vec{0, 0, 1, 2}));
  activation_forward(Activation::gelu, y.data(), x.data(), 4);
  EXPECT_NEAR(y[0], -0.15865525393145707, 1e-15);  // x * Phi(x)
  EXPECT_NEAR(y[2], 0.8413447460685429, 1e-15);
  activation_forward(Activation::gelu_tanh, y.data(), x.data(), 4);
  EXPECT_NEAR(y[2], 0.8411919906082768, 1e-15);  // torch.nn.functional.gelu(1.0, approximate='tanh')
  EXPECT_NEAR(y[3], 1.954597694087775, 1e-15);
}

class ActivationGradient : public ::testing::TestWithParam<Activation> {};

TEST_P(ActivationGradient, MatchesFiniteDifferences) {
  const int64_t n = 40;
  Vec x = random_vector(n, 5, 2.0);
  for (double& v : x)
    if (std::abs(v) < 1e-3) v = 0.5;  // keep ReLU's kink out of the finite differences
  const Vec dout = random_vector(n, 6);
  auto loss = [&] {
    Vec y(n);
    activation_forward(GetParam(), y.data(), x.data(), n);
    return dot(y, dout);
  };
  Vec dx(n);
  activation_backward(GetParam(), dx.data(), x.data(), dout.data(), n);
  expect_gradient_close(std::string(name_of(GetParam())), dx, numeric_gradient(x, loss));
}

INSTANTIATE_TEST_SUITE_P(All, ActivationGradient,
                         ::testing::Values(Activation::relu, Activation::gelu, Activation::gelu_tanh),
                         [](const auto& info) { return std::string(name_of(info.param)); });

// ---- Softmax ---------------------------------------------------------------------------------

TEST(Softmax, RowsSumToOneAndMaskedRowIsZero) {
  const double inf = std::numeric_limits<double>::infinity();
  const Vec x = {1, 2, 3, -inf, 0, -inf, -inf, -inf, -inf};
  Vec y(9);
  softmax_forward(y.data(), x.data(), 3, 3);
  EXPECT_NEAR(y[0] + y[1] + y[2], 1.0, 1e-15);
  EXPECT_NEAR(y[2] / y[1], std::exp(1.0), 1e-12);
  EXPECT_EQ(y[3], 0.0);
  EXPECT_EQ(y[4], 1.0);
  EXPECT_EQ(y[6] + y[7] + y[8], 0.0);
}

TEST(Softmax, GradientsMatchFiniteDifferences) {
  const int64_t N = 3, C = 5;
  Vec x = random_vector(N * C, 7);
  const Vec dout = random_vector(N * C, 8);
  auto loss = [&] {
    Vec y(N * C);
    softmax_forward(y.data(), x.data(), N, C);
    return dot(y, dout);
  };
  Vec y(N * C), dx(N * C);
  softmax_forward(y.data(), x.data(), N, C);
  softmax_backward(dx.data(), y.data(), dout.data(), N, C);
  expect_gradient_close("dx", dx, numeric_gradient(x, loss));
}

// ---- Attention -------------------------------------------------------------------------------

struct AttentionCase {
  bool causal;
  bool dropout;
};

class AttentionGradient : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(AttentionGradient, MatchesFiniteDifferences) {
  const int64_t B = 2, T = 4, H = 2, C = 6;
  const auto [causal, with_dropout] = GetParam();
  Vec qkv = random_vector(B * T * 3 * C, 9);
  const Vec dz = random_vector(B * T * C, 10);
  Vec mask(B * H * T * T);
  dropout_mask(mask.data(), int64_t(mask.size()), 0.3, 42, 0);
  const double* m = with_dropout ? mask.data() : nullptr;
  Vec scores(B * H * T * T), pattern(B * H * T * T), scratch(2 * T * T);
  auto run = [&](Vec& z) {
    attention_forward(z.data(), scores.data(), pattern.data(), qkv.data(), m, scratch.data(), B, T, C, H, causal);
  };
  auto loss = [&] {
    Vec z(B * T * C);
    run(z);
    return dot(z, dz);
  };
  Vec z(B * T * C), dqkv(B * T * 3 * C);
  run(z);
  if (causal) {  // no position attends to a later one
    for (int64_t bh = 0; bh < B * H; ++bh)
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = i + 1; j < T; ++j) EXPECT_EQ(pattern[(bh * T + i) * T + j], 0.0);
  }
  attention_backward(dqkv.data(), dz.data(), qkv.data(), pattern.data(), m, scratch.data(), B, T, C, H);
  expect_gradient_close("dqkv", dqkv, numeric_gradient(qkv, loss));
}

INSTANTIATE_TEST_SUITE_P(All, AttentionGradient,
                         ::testing::Values(AttentionCase{false, false}, AttentionCase{true, false},
                                           AttentionCase{false, true}, AttentionCase{true, true}),
                         [](const auto& info) {
                           return std::string(info.param.causal ? "causal" : "full") +
                                  (info.param.dropout ? "_dropout" : "");
                         });

// Above a few microseconds of work the (sequence, head) pairs are split over the threads, each with its own
// scratch: the results must be the same bits as on one thread (the gradient checks above run on one).
TEST(Attention, SameBitsOnOneOrTwoThreads) {
  const int64_t B = 8, T = 16, H = 4, C = 64;
  std::vector<float> qkv(B * T * 3 * C), dz(B * T * C), mask(B * H * T * T);
  for (size_t i = 0; i < qkv.size(); ++i) qkv[i] = float(std::sin(0.37 * double(i)));
  for (size_t i = 0; i < dz.size(); ++i) dz[i] = float(std::cos(0.11 * double(i)));
  dropout_mask(mask.data(), int64_t(mask.size()), 0.2, 7, 0);
  for (bool causal : {false, true}) {
    auto run = [&](int threads) {
      set_blas_threads(threads);
      std::vector<float> z(B * T * C), scores(B * H * T * T), pattern(B * H * T * T), scratch(2 * T * T),
          dqkv(B * T * 3 * C, 0.5f);
      attention_forward(z.data(), scores.data(), pattern.data(), qkv.data(), mask.data(), scratch.data(), B, T, C,
                        H, causal);
      attention_backward(dqkv.data(), dz.data(), qkv.data(), pattern.data(), mask.data(), scratch.data(), B, T, C, H);
      return std::make_pair(z, dqkv);
    };
    const auto one = run(1), two = run(2);
    set_blas_threads(1);
    EXPECT_EQ(one.first, two.first) << (causal ? "causal" : "full");
    EXPECT_EQ(one.second, two.second) << (causal ? "causal" : "full");
  }
}

TEST(Attention, SingleHeadByHand) {
  // T = 2, one head of width 1: q = k = v = [1, 2]. scores = q k^T = [[1, 2], [2, 4]].
  const int64_t B = 1, T = 2, H = 1, C = 1;
  const Vec qkv = {1, 1, 1, 2, 2, 2};  // rows: q | k | v
  Vec z(2), scores(4), pattern(4), scratch(8);
  attention_forward(z.data(), scores.data(), pattern.data(), qkv.data(), static_cast<const double*>(nullptr),
                    scratch.data(), B, T, C, H, false);
  EXPECT_EQ(scores, (Vec{1, 2, 2, 4}));
  const double p01 = 1 / (1 + std::exp(-1.0)), p11 = 1 / (1 + std::exp(-2.0));
  EXPECT_NEAR(pattern[1], p01, 1e-15);
  EXPECT_NEAR(z[0], (1 - p01) * 1 + p01 * 2, 1e-15);
  EXPECT_NEAR(z[1], (1 - p11) * 1 + p11 * 2, 1e-15);
}

// ---- Residual --------------------------------------------------------------------------------

TEST(Residual, ForwardAndGradients) {
  const int64_t n = 7;
  for (bool on : {true, false}) {
    Vec x = random_vector(n, 11), f = random_vector(n, 12), alpha_v = {0.7};
    const Vec dout = random_vector(n, 13);
    auto loss = [&] {
      Vec y(n);
      residual_forward(y.data(), x.data(), f.data(), alpha_v[0], on, n);
      return dot(y, dout);
    };
    Vec y(n);
    residual_forward(y.data(), x.data(), f.data(), 0.7, on, n);
    EXPECT_DOUBLE_EQ(y[3], on ? x[3] + 0.7 * f[3] : f[3]);
    Vec dx(n), df(n), dalpha(1);
    residual_backward(dx.data(), df.data(), dalpha.data(), dout.data(), f.data(), 0.7, on, n);
    expect_gradient_close(on ? "dx" : "dx (off)", dx, numeric_gradient(x, loss));
    expect_gradient_close("df", df, numeric_gradient(f, loss));
    if (on) expect_gradient_close("dalpha", dalpha, numeric_gradient(alpha_v, loss));
  }
}

// ---- Dropout ---------------------------------------------------------------------------------

TEST(Dropout, MaskIsDeterministicPerSeedAndScaled) {
  const int64_t n = 20000;
  Vec a(n), b(n), c(n), d(n);
  dropout_mask(a.data(), n, 0.25, 7, 3);
  dropout_mask(b.data(), n, 0.25, 7, 3);
  dropout_mask(c.data(), n, 0.25, 8, 3);
  dropout_mask(d.data(), n, 0.25, 7, 4);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  int64_t zeros = 0;
  for (double v : a) {
    if (v == 0) ++zeros;
    else EXPECT_DOUBLE_EQ(v, 1 / 0.75);
  }
  EXPECT_NEAR(double(zeros) / n, 0.25, 0.015);
}

TEST(Dropout, GradientsMatchFiniteDifferences) {
  const int64_t n = 30;
  Vec x = random_vector(n, 14), mask(n);
  dropout_mask(mask.data(), n, 0.4, 1, 0);
  const Vec dout = random_vector(n, 15);
  auto loss = [&] {
    Vec y(n);
    dropout_forward(y.data(), x.data(), mask.data(), n);
    return dot(y, dout);
  };
  Vec dx(n);
  dropout_backward(dx.data(), dout.data(), mask.data(), n);
  expect_gradient_close("dx", dx, numeric_gradient(x, loss));
}

// ---- Embedding -------------------------------------------------------------------------------

TEST(Embedding, GradientsMatchFiniteDifferences) {
  const int64_t V = 5, C = 3, N = 6;
  const std::vector<int32_t> tokens = {0, 3, 3, 1, 4, 0};
  Vec table = random_vector(V * C, 16);
  const Vec dout = random_vector(N * C, 17);
  auto loss = [&] {
    Vec y(N * C);
    embedding_forward(y.data(), tokens.data(), table.data(), N, C);
    return dot(y, dout);
  };
  Vec y(N * C);
  embedding_forward(y.data(), tokens.data(), table.data(), N, C);
  EXPECT_EQ(y[3 * 1 + 2], table[3 * 3 + 2]);
  Vec dtable(V * C);
  embedding_backward(dtable.data(), tokens.data(), dout.data(), N, C);
  expect_gradient_close("dtable", dtable, numeric_gradient(table, loss));
}

// ---- Cross-entropy ---------------------------------------------------------------------------

TEST(CrossEntropy, UniformLogitsGiveLogV) {
  const Vec logits(2 * 10, 0.3);
  const std::vector<int32_t> targets = {1, 9};
  Vec probs(20);
  EXPECT_NEAR(cross_entropy_forward(probs.data(), logits.data(), targets.data(), 2, 10), std::log(10.0), 1e-12);
}

TEST(CrossEntropy, GradientsMatchFiniteDifferences) {
  const int64_t N = 4, V = 6;
  Vec logits = random_vector(N * V, 18, 2.0);
  const std::vector<int32_t> targets = {0, 5, 2, 2};
  auto loss = [&] {
    Vec probs(N * V);
    return cross_entropy_forward(probs.data(), logits.data(), targets.data(), N, V);
  };
  Vec probs(N * V), dlogits(N * V);
  cross_entropy_forward(probs.data(), logits.data(), targets.data(), N, V);
  cross_entropy_backward(dlogits.data(), probs.data(), targets.data(), 1.0, N, V);
  expect_gradient_close("dlogits", dlogits, numeric_gradient(logits, loss));
}

// ---- AdamW -----------------------------------------------------------------------------------

TEST(AdamW, FirstStepMovesEachParameterByLrTimesSignOfGradient) {
  // At step 1 the bias-corrected m / sqrt(v) is g / |g|: each parameter moves by lr (minus decay).
  Vec p = {1.0, -2.0, 3.0}, g = {0.5, -0.1, 0.0}, m(3), v(3);
  AdamWHyper h;
  h.lr = 0.01;
  h.weight_decay = 0.1;
  adamw_update(p.data(), g.data(), m.data(), v.data(), 3, h, 1);
  EXPECT_NEAR(p[0], 1.0 * (1 - 0.001) - 0.01, 1e-9);
  EXPECT_NEAR(p[1], -2.0 * (1 - 0.001) + 0.01, 1e-9);
  EXPECT_NEAR(p[2], 3.0 * (1 - 0.001), 1e-12);  // zero gradient: only the decay
}

// ---- The AVX2 float path against the portable one ---------------------------------------------

using Fv = std::vector<float>;

Fv random_floats(size_t n, uint64_t seed, double scale) {
  const Vec v = random_vector(n, seed, scale);
  return Fv(v.begin(), v.end());
}

// Worst |a - b| / max(1, |b|).
double worst(const Fv& a, const Fv& b) {
  double w = 0;
  for (size_t i = 0; i < a.size(); ++i) w = std::max(w, std::abs(double(a[i]) - b[i]) / std::max(1.0, std::abs(double(b[i]))));
  return w;
}

class FastPath : public ::testing::TestWithParam<std::pair<int64_t, int64_t>> {
 protected:
  void SetUp() override {
    if (!simd_available()) GTEST_SKIP() << "this CPU has no AVX2 + FMA: float uses the portable kernels";
  }
};

TEST_P(FastPath, NormsMatchThePortableKernels) {
  const auto [N, C] = GetParam();
  const Fv x = random_floats(size_t(N * C), 1, 3.0), w = random_floats(size_t(C), 2, 1.0), b = random_floats(size_t(C), 3, 1.0);
  const Fv dy = random_floats(size_t(N * C), 4, 1.0);
  Fv o1(x.size()), o2(x.size()), m1(static_cast<size_t>(N)), m2(static_cast<size_t>(N)), r1(static_cast<size_t>(N)), r2(static_cast<size_t>(N));
  layernorm_forward(o1.data(), m1.data(), r1.data(), x.data(), w.data(), b.data(), N, C, 1e-5);
  portable::layernorm_forward(o2.data(), m2.data(), r2.data(), x.data(), w.data(), b.data(), N, C, 1e-5);
  EXPECT_LT(worst(o1, o2), 2e-5);
  EXPECT_LT(worst(m1, m2), 2e-6);
  EXPECT_LT(worst(r1, r2), 2e-5);
  Fv dx1(x.size(), 0.5f), dx2(x.size(), 0.5f), dw1(static_cast<size_t>(C), 1.f), dw2(static_cast<size_t>(C), 1.f), db1(static_cast<size_t>(C)), db2(static_cast<size_t>(C));
  layernorm_backward(dx1.data(), dw1.data(), db1.data(), dy.data(), x.data(), w.data(), m2.data(), r2.data(), N, C);
  portable::layernorm_backward(dx2.data(), dw2.data(), db2.data(), dy.data(), x.data(), w.data(), m2.data(), r2.data(), N, C);
  EXPECT_LT(worst(dx1, dx2), 2e-5);
  EXPECT_LT(worst(dw1, dw2), 1e-4);
  EXPECT_LT(worst(db1, db2), 1e-4);
  rmsnorm_forward(o1.data(), r1.data(), x.data(), w.data(), N, C, 1e-5);
  portable::rmsnorm_forward(o2.data(), r2.data(), x.data(), w.data(), N, C, 1e-5);
  EXPECT_LT(worst(o1, o2), 2e-5);
  Fv dwa(static_cast<size_t>(C)), dwb(static_cast<size_t>(C));
  std::fill(dx1.begin(), dx1.end(), 0.f);
  std::fill(dx2.begin(), dx2.end(), 0.f);
  rmsnorm_backward(dx1.data(), dwa.data(), dy.data(), x.data(), w.data(), r2.data(), N, C);
  portable::rmsnorm_backward(dx2.data(), dwb.data(), dy.data(), x.data(), w.data(), r2.data(), N, C);
  EXPECT_LT(worst(dx1, dx2), 2e-5);
  EXPECT_LT(worst(dwa, dwb), 1e-4);
}

TEST_P(FastPath, ActivationsAndSoftmaxMatchThePortableKernels) {
  const auto [N, C] = GetParam();
  Fv x = random_floats(static_cast<size_t>(N * C), 5, 3.0);
  x[0] = 30.f;  // the tails: tanh and erf saturate, exp clamps
  x[1] = -30.f;
  if (x.size() > 3) x[2] = 0.f, x[3] = -1e-7f;
  const Fv dy = random_floats(x.size(), 6, 1.0);
  // Against the portable kernels in double (the truth): the float paths may differ from each other by
  // rounding (the portable float tanh loses 1 - t^2 near saturation; the AVX2 path does not).
  const Vec xd(x.begin(), x.end()), dyd(dy.begin(), dy.end());
  for (Activation a : {Activation::relu, Activation::gelu, Activation::gelu_tanh}) {
    Fv y1(x.size()), g1(x.size(), 1.f);
    Vec y2(x.size()), g2(x.size(), 1.0);
    activation_forward(a, y1.data(), x.data(), int64_t(x.size()));
    portable::activation_forward(a, y2.data(), xd.data(), int64_t(x.size()));
    EXPECT_LT(worst(y1, Fv(y2.begin(), y2.end())), 1e-6) << name_of(a);
    activation_backward(a, g1.data(), x.data(), dy.data(), int64_t(x.size()));
    portable::activation_backward(a, g2.data(), xd.data(), dyd.data(), int64_t(x.size()));
    EXPECT_LT(worst(g1, Fv(g2.begin(), g2.end())), 2e-6) << name_of(a);
  }
  Fv s = random_floats(x.size(), 7, 4.0);
  for (size_t i = 0; i < s.size(); i += 3) s[i] = -INFINITY;  // masked scores
  Fv p1(s.size()), p2(s.size());
  softmax_forward(p1.data(), s.data(), N, C);
  portable::softmax_forward(p2.data(), s.data(), N, C);
  EXPECT_LT(worst(p1, p2), 2e-6);
  for (size_t i = 0; i < s.size(); i += 3) EXPECT_EQ(p1[i], 0.f);
}

INSTANTIATE_TEST_SUITE_P(Shapes, FastPath,
                         ::testing::Values(std::pair<int64_t, int64_t>{2, 3}, std::pair<int64_t, int64_t>{3, 8},
                                           std::pair<int64_t, int64_t>{5, 37}, std::pair<int64_t, int64_t>{4, 512},
                                           std::pair<int64_t, int64_t>{300, 512}),  // 300 x 512: split over threads
                         [](const auto& info) {
                           return std::to_string(info.param.first) + "x" + std::to_string(info.param.second);
                         });

// ---- AVX-512 activations: the AVX2 kernels' bits, twice the width ------------------------------------
// Every element takes the same operations on both (simd_kernels.h), so the results are equal bit for
// bit, at every position (the 16-wide body, the 8-wide remainder, the single-value tail) and on the
// threaded split. On a CPU without AVX-512F there is nothing to compare: the test says so and is skipped.

TEST(Avx512Activations, EqualTheAvx2KernelsBitForBit) {
  if (!avx2::available() || !avx512::available()) GTEST_SKIP() << "this CPU has no AVX-512F: only the AVX2 kernels run";
  auto same_bits = [](const Fv& a, const Fv& b) {
    // (memcmp of no bytes still needs real pointers: UBSan flags an empty vector's null data)
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  };
  for (int64_t n : {0, 1, 7, 8, 9, 15, 16, 17, 23, 24, 31, 33, 1000, 70001}) {  // 70001: split over threads
    Fv x = random_floats(size_t(n), 11, 4.0);
    const float specials[] = {0.f, -0.f, 30.f, -30.f, 1e-7f, -1e-7f, 88.5f, -88.5f, 3e38f, -3e38f, 1e-40f,
                              INFINITY, -INFINITY, NAN};
    for (size_t i = 0; i < std::size(specials) && i < x.size(); ++i) x[(i * 7919) % x.size()] = specials[i];
    const Fv dy = random_floats(size_t(n), 12, 1.0);
    using Fwd = void (*)(float*, const float*, int64_t);
    using Bwd = void (*)(float*, const float*, const float*, int64_t);
    const struct {
      const char* name;
      Fwd f2, f512;
      Bwd b2, b512;
    } kernels[] = {
        {"relu", avx2::relu_forward, avx512::relu_forward, avx2::relu_backward, avx512::relu_backward},
        {"gelu", avx2::gelu_forward, avx512::gelu_forward, avx2::gelu_backward, avx512::gelu_backward},
        {"gelu_tanh", avx2::gelu_tanh_forward, avx512::gelu_tanh_forward, avx2::gelu_tanh_backward,
         avx512::gelu_tanh_backward},
    };
    for (const auto& k : kernels) {
      Fv y2(x.size(), 7.f), y512(x.size(), 7.f);
      k.f2(y2.data(), x.data(), n);
      k.f512(y512.data(), x.data(), n);
      EXPECT_TRUE(same_bits(y2, y512)) << k.name << " forward, n " << n;
      Fv g2(x.size(), 0.25f), g512(x.size(), 0.25f);  // the backward adds into dinp
      k.b2(g2.data(), x.data(), dy.data(), n);
      k.b512(g512.data(), x.data(), dy.data(), n);
      EXPECT_TRUE(same_bits(g2, g512)) << k.name << " backward, n " << n;
    }
    // AdamW: parameters and both moments, from the same state
    Fv p2 = random_floats(size_t(n), 13, 1.0), m2 = random_floats(size_t(n), 14, 0.1), v2 = random_floats(size_t(n), 15, 0.1);
    for (float& e : v2) e = e * e;
    Fv p512 = p2, m512 = m2, v512 = v2;
    avx2::adamw_update(p2.data(), dy.data(), m2.data(), v2.data(), n, 0.999f, 0.9f, 0.999f, 1e-8f, 1.3e-3f, 1.02f);
    avx512::adamw_update(p512.data(), dy.data(), m512.data(), v512.data(), n, 0.999f, 0.9f, 0.999f, 1e-8f, 1.3e-3f, 1.02f);
    EXPECT_TRUE(same_bits(p2, p512) && same_bits(m2, m512) && same_bits(v2, v512)) << "adamw, n " << n;
  }
}

// The vectorised AdamW against the portable loop in double: one step of random state.
TEST(FastPath, AdamWMatchesThePortableUpdate) {
  if (!simd_available()) GTEST_SKIP() << "this CPU has no AVX2 + FMA: float uses the portable kernels";
  for (int64_t n : {1, 7, 8, 31, 70001}) {
    const Fv g = random_floats(size_t(n), 1, 1.0), p0 = random_floats(size_t(n), 2, 1.0);
    Fv m0 = random_floats(size_t(n), 3, 0.1), v0 = random_floats(size_t(n), 4, 0.1);
    for (float& e : v0) e = e * e;
    Fv p = p0, m = m0, v = v0;
    Vec pd(p0.begin(), p0.end()), md(m0.begin(), m0.end()), vd(v0.begin(), v0.end()), gd(g.begin(), g.end());
    const AdamWHyper h{3e-3, 0.9, 0.999, 1e-8, 0.01};
    adamw_update(p.data(), g.data(), m.data(), v.data(), n, h, 7);
    adamw_update(pd.data(), gd.data(), md.data(), vd.data(), n, h, 7);
    EXPECT_LT(worst(p, Fv(pd.begin(), pd.end())), 4e-6) << n;  // a few float32 ulps of the parameter
    EXPECT_LT(worst(m, Fv(md.begin(), md.end())), 1e-6) << n;
    EXPECT_LT(worst(v, Fv(vd.begin(), vd.end())), 1e-6) << n;
  }
}

// ---- Norms at the edge of float32 (issue 11) ----------------------------------------------------
// Squares of |x| > 1.8e19 overflow float32: the float32 (AVX2) path takes such rows in float64, so every
// input within float32 gives finite, correct statistics. Widths 3 (scalar tail) and 19 (vector + tail).

TEST(RMSNorm, EqualHugeValuesGiveOnes) {
  for (int64_t C : {3, 19}) {
    for (float v : {1e20f, -3e38f, 3.4e38f, 1e-45f}) {
      std::vector<float> x(size_t(C), v), w(size_t(C), 1.0f), out(static_cast<size_t>(C)), rstd(1);
      rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), 1, C, 1e-5);
      const double expect = v > 1e-30f || v < -1e-30f ? (v > 0 ? 1.0 : -1.0) : double(v) / std::sqrt(1e-5);
      for (float y : out) EXPECT_NEAR(y, expect, 1e-5) << "C " << C << " v " << v;
      EXPECT_TRUE(std::isfinite(rstd[0]) && rstd[0] > 0) << v;
    }
  }
}

TEST(LayerNorm, HugeOppositeValuesGiveFiniteCorrectRows) {
  for (int64_t C : {3, 19}) {
    std::vector<float> x(static_cast<size_t>(C)), w(size_t(C), 1.0f), b(size_t(C), 0.0f), out(static_cast<size_t>(C)), mean(1), rstd(1);
    for (int64_t c = 0; c < C; ++c) x[size_t(c)] = c % 2 ? -3e38f : 3e38f;
    layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), 1, C, 1e-5);
    // Reference in long double.
    long double mu = 0, var = 0;
    for (float v : x) mu += v;
    mu /= C;
    for (float v : x) var += (v - mu) * (v - mu);
    var /= C;
    for (int64_t c = 0; c < C; ++c) {
      ASSERT_TRUE(std::isfinite(out[size_t(c)])) << C;
      EXPECT_NEAR(out[size_t(c)], double((x[size_t(c)] - mu) / std::sqrt(var)), 1e-5) << C;
    }
    EXPECT_NEAR(mean[0] / 3e38, double(mu / 3e38L), 1e-6);
  }
  // Equal huge values: zero spread, out = bias.
  std::vector<float> x(19, 1e20f), w(19, 2.0f), b(19, 0.5f), out(19), mean(1), rstd(1);
  layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), 1, 19, 1e-5);
  for (float y : out) EXPECT_EQ(y, 0.5f);
}

TEST(LayerNorm, OrdinaryRowsKeepTheirBits) {
  // The float64 fallback is for huge rows only: an ordinary row takes the float32 path as before, so
  // the output equals the plain float32 formula to the last bit or two.
  const std::vector<double> xd = random_vector(19, 3);
  std::vector<float> x(xd.begin(), xd.end()), w(19, 1.0f), b(19, 0.0f), out(19), mean(1), rstd(1);
  layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), 1, 19, 1e-5);
  for (int64_t c = 0; c < 19; ++c) EXPECT_NEAR(out[size_t(c)], (x[size_t(c)] - mean[0]) * rstd[0], 1e-6);
}

}  // namespace
}  // namespace blocklab
