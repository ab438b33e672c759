// The optimizer against PyTorch 1.13 (tools/make_fixtures.py, optim_*): torch.optim.AdamW and Adam with
// weight decay, a LambdaLR linear warm-up and clip_grad_norm_, five steps on different batches.
#include "engine/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <utility>
#include <vector>

#include "engine/blas.h"
#include "engine/model.h"
#include "io/model_file.h"
#include "io/safetensors.h"

namespace blocklab {
namespace {

const std::string kDir = std::string(BLOCKLAB_SOURCE_DIR) + "/tests/fixtures/parity/";

std::vector<double> values(const io::SafetensorsFile& f, const std::string& name) {
  const io::StoredTensor* t = f.find(name);
  EXPECT_NE(t, nullptr) << name;
  return t ? io::to_float_tensor<double>(*t, "fixture").value().data : std::vector<double>{};
}

template <typename T>
void check_against_torch(const std::string& kind, double loss_tol, double param_tol) {
  Model<T> model = io::load_model<T>(kDir + "optim_" + kind + ".model.safetensors").value();
  const io::SafetensorsFile f = io::read_safetensors(kDir + "optim_" + kind + ".io.safetensors").value();
  const std::vector<double> h = values(f, "hyper");
  OptimizerConfig c;
  c.kind = kind == "adam" ? OptimizerConfig::Kind::adam : OptimizerConfig::Kind::adamw;
  c.lr = h[0];
  c.beta1 = h[1];
  c.beta2 = h[2];
  c.eps = h[3];
  c.weight_decay = h[4];
  c.warmup_steps = int64_t(h[5]);
  c.clip_norm = h[6];
  Optimizer<T> opt(c, int64_t(model.params().size()));
  for (int step = 1; step <= 5; ++step) {
    const std::string p = "step" + std::to_string(step) + ".";
    const io::StoredTensor* tokens_t = f.find(p + "tokens");
    const std::vector<int32_t> tokens = io::to_int_ids(*tokens_t, "f").value();
    const std::vector<int32_t> targets = io::to_int_ids(*f.find(p + "targets"), "f").value();
    model.zero_grads();
    ASSERT_TRUE(model.forward_lm(tokens.data(), targets.data(), tokens_t->shape[0], tokens_t->shape[1]).is_ok());
    EXPECT_NEAR(model.loss(), values(f, p + "loss")[0], loss_tol) << kind << " step " << step;
    model.backward_lm();
    const double norm = opt.step(model.params().data(), model.grads().data());
    const double want_norm = values(f, p + "grad_norm")[0];
    EXPECT_NEAR(norm, want_norm, loss_tol * want_norm) << kind << " step " << step;
    EXPECT_GT(want_norm, c.clip_norm) << "the fixture should exercise clipping";
    for (const ParamSpec& s : model.layout().specs()) {
      const std::vector<double> want = values(f, p + s.name);
      double worst = 0;
      for (size_t i = 0; i < want.size(); ++i)
        worst = std::max(worst, std::abs(double(model.params()[size_t(s.offset) + i]) - want[i]));
      EXPECT_LE(worst, param_tol) << kind << " step " << step << " " << s.name;
    }
  }
}

TEST(OptimizerParity, AdamWWithWarmupAndClippingFloat64) { check_against_torch<double>("adamw", 1e-10, 1e-10); }
TEST(OptimizerParity, AdamWithL2WeightDecayWarmupAndClippingFloat64) {
  check_against_torch<double>("adam", 1e-10, 1e-10);
}
// In float32 a parameter whose exact gradient is zero (the key bias) moves by rounding noise scaled
// up by Adam, up to lr per step (parity_test.cpp explains it); 1e-3 covers it over five warm-up steps.
TEST(OptimizerParity, AdamWFloat32) { check_against_torch<float>("adamw", 1e-5, 1e-2 * 0.6); }
TEST(OptimizerParity, AdamFloat32) { check_against_torch<float>("adam", 1e-5, 1e-2 * 0.6); }

TEST(Optimizer, WarmupIsLinearThenConstant) {
  OptimizerConfig c;
  c.lr = 1e-3;
  c.warmup_steps = 4;
  Optimizer<float> opt(c, 1);
  EXPECT_DOUBLE_EQ(opt.lr_at(1), 0.25e-3);
  EXPECT_DOUBLE_EQ(opt.lr_at(2), 0.5e-3);
  EXPECT_DOUBLE_EQ(opt.lr_at(4), 1e-3);
  EXPECT_DOUBLE_EQ(opt.lr_at(100), 1e-3);
  c.warmup_steps = 0;
  EXPECT_DOUBLE_EQ(Optimizer<float>(c, 1).lr_at(1), 1e-3);
}

TEST(Optimizer, ClippingScalesTheGlobalNormAndReportsItBeforeClipping) {
  OptimizerConfig c;
  c.clip_norm = 1.0;
  c.lr = 0.1;
  Optimizer<double> opt(c, 2);
  std::vector<double> p = {0, 0}, g = {3, 4};
  EXPECT_DOUBLE_EQ(opt.step(p.data(), g.data()), 5.0);
  EXPECT_NEAR(g[0], 0.6, 1e-6);
  EXPECT_NEAR(g[1], 0.8, 1e-6);
  EXPECT_EQ(opt.steps_done(), 1);
}

// The global norm and the update run on all threads above 64k values; both must give the same bits for any
// number of threads, or a run would not replay bit for bit on a machine with another core count.
TEST(Optimizer, SameBitsForAnyNumberOfThreads) {
  const int64_t n = 300001;  // not a multiple of any chunk
  std::vector<float> grads(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) grads[size_t(i)] = float(std::sin(0.001 * double(i)) * (1 + i % 7));
  auto run = [&](int threads) {
    set_blas_threads(threads);
    std::vector<float> params(static_cast<size_t>(n), 0.5f), g = grads;
    OptimizerConfig c;
    c.clip_norm = 1.0;
    c.weight_decay = 0.1;
    Optimizer<float> opt(c, n);
    const double norm = opt.step(params.data(), g.data());
    return std::make_pair(norm, params);
  };
  const auto one = run(1), two = run(2), three = run(3);
  set_blas_threads(1);
  EXPECT_EQ(one.first, two.first);
  EXPECT_EQ(one.first, three.first);
  EXPECT_EQ(one.second, two.second);
  EXPECT_EQ(one.second, three.second);
  double direct = 0;
  for (float g : grads) direct += double(g) * double(g);
  EXPECT_NEAR(one.first, std::sqrt(direct), 1e-9 * std::sqrt(direct));
}

}  // namespace
}  // namespace blocklab
