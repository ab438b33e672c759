// forward / backward with --hook-patch, --ablate, --wrt and --threads (docs/hooks.md): a patch through the
// command line against PyTorch's hooked forward (tests/fixtures/hooks, float64), head ablation, shapes without
// the batch axis, and every bad flag as exit 2 with one line.
#include "cli_fixture.h"

namespace blocklab::testing {
namespace {

const std::string kHooks = std::string(BLOCKLAB_SOURCE_DIR) + "/tests/fixtures/hooks/";

std::vector<double> values(const io::SafetensorsFile& f, const std::string& n) {
  const io::StoredTensor* t = f.find(n);
  EXPECT_NE(t, nullptr) << n;
  return t ? io::to_float_tensor<double>(*t, "f").value().data : std::vector<double>{};
}

double rel_error(const std::vector<double>& got, const std::vector<double>& want) {
  EXPECT_EQ(got.size(), want.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    diff = std::max(diff, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

TEST_F(Cli, HookPatchAndWrtMatchPyTorchsHookedForward) {
  const std::string m = kHooks + "post_layernorm_relu_alpha.model.safetensors";
  const std::string in = kHooks + "post_layernorm_relu_alpha.io.safetensors";
  const io::SafetensorsFile fixture = read(in);
  for (const std::string target : {"blocks.0.hook_resid_mid", "blocks.1.attn.hook_pattern", "blocks.0.mlp.hook_in"}) {
    SCOPED_TRACE(target);
    // the activation as it is, then the fixture's patch of it: where(mask, values, activation)
    ASSERT_EQ(run("forward --dtype f64 --trace --model " + m + " --input " + in + " --output " + path("t.safetensors")).code, 0);
    const io::SafetensorsFile traced = read(path("t.safetensors"));
    const io::StoredTensor* act = traced.find(target);
    ASSERT_NE(act, nullptr);
    std::vector<double> patch = values(traced, target);
    const std::vector<double> mask = values(fixture, "patch." + target + ".mask");
    const std::vector<double> repl = values(fixture, "patch." + target + ".values");
    ASSERT_EQ(patch.size(), mask.size());
    for (size_t i = 0; i < patch.size(); ++i)
      if (mask[i] != 0) patch[i] = repl[i];
    io::SafetensorsFile pf;
    pf.add(io::from_float_tensor(target, Tensor<double>(act->shape, patch), io::DType::F64));
    ASSERT_TRUE(io::write_safetensors(path("patch.safetensors"), pf).is_ok());

    const std::string hooks = " --hook-patch " + target + "=" + path("patch.safetensors");
    CliRun r = run("forward --dtype f64 --model " + m + " --input " + in + " --output " + path("y.safetensors") + hooks);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_LE(rel_error(values(read(path("y.safetensors")), "y"), values(fixture, "patched." + target + ".y")), 1e-12);

    r = run("backward --dtype f64 --threads 2 --model " + m + " --input " + in + " --output " + path("g.safetensors") +
            hooks + " --wrt " + target + " --wrt blocks.0.hook_resid_pre");
    ASSERT_EQ(r.code, 0) << r.err;
    const io::SafetensorsFile g = read(path("g.safetensors"));
    const std::string pre = "patched." + target + ".";
    EXPECT_LE(rel_error(values(g, "grad.x"), values(fixture, pre + "grad.x")), 1e-9);
    EXPECT_LE(rel_error(values(g, "grad." + target), values(fixture, pre + "wrt." + target)), 1e-9);
    EXPECT_LE(rel_error(values(g, "grad.blocks.0.hook_resid_pre"), values(fixture, pre + "wrt.blocks.0.hook_resid_pre")), 1e-9);
    EXPECT_EQ(g.find("grad." + target)->shape, act->shape);
    int params = 0;
    for (const io::StoredTensor& t : g.tensors) {
      if (!t.name.starts_with("grad.layers.")) continue;
      EXPECT_LE(rel_error(values(g, t.name), values(fixture, pre + t.name)), 1e-9) << t.name;
      ++params;
    }
    EXPECT_EQ(params, 24);  // 2 layers x (4 attention + 4 FFN + 4 norm) parameters
  }
}

TEST_F(Cli, AblatingAHeadsPatternZeroesThatHeadsOutputOnly) {
  const std::string m = make_model("--d-model 8 --n-heads 2 --d-ff 16 --n-layers 1 --causal on");
  const std::string in = make_input({2, 5, 8});
  ASSERT_EQ(run("forward --trace --model " + m + " --input " + in + " --output " + path("a.safetensors")).code, 0);
  CliRun r = run("forward --trace --model " + m + " --input " + in + " --output " + path("b.safetensors") +
                 " --ablate blocks.0.attn.hook_pattern:1");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto z0 = values(read(path("a.safetensors")), "blocks.0.attn.hook_z");
  const auto z1 = values(read(path("b.safetensors")), "blocks.0.attn.hook_z");
  ASSERT_EQ(z0.size(), size_t(2 * 5 * 2 * 4));
  for (size_t i = 0; i < z0.size(); ++i) {
    const bool head1 = (i / 4) % 2 == 1;  // [B, T, H=2, D=4]
    if (head1)
      EXPECT_EQ(z1[i], 0.0) << i;
    else
      EXPECT_EQ(z1[i], z0[i]) << i;
  }
  // head 1's share of out_proj removed: the same output as its pattern zeroed (z_1 = 0), up to rounding
  r = run("forward --model " + m + " --input " + in + " --output " + path("e.safetensors") + " --ablate blocks.0.attn.hook_result:1");
  ASSERT_EQ(r.code, 0) << r.err;
  {
    const auto y_result = values(read(path("e.safetensors")), "y"), y_pattern = values(read(path("b.safetensors")), "y");
    ASSERT_EQ(y_result.size(), y_pattern.size());
    for (size_t i = 0; i < y_result.size(); ++i) EXPECT_NEAR(y_result[i], y_pattern[i], 1e-5) << i;
  }
  // zeroed scores: the head attends evenly to what it can see, the causal mask kept
  r = run("forward --trace --model " + m + " --input " + in + " --output " + path("c.safetensors") +
          " --ablate blocks.0.attn.hook_scores:0");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto p = values(read(path("c.safetensors")), "blocks.0.attn.hook_pattern");  // [B, H, T, T]
  for (int64_t t = 0; t < 5; ++t)
    for (int64_t s = 0; s < 5; ++s) EXPECT_NEAR(p[size_t(t * 5 + s)], s <= t ? 1.0 / double(t + 1) : 0.0, 1e-7);
  // the whole activation ablated: the block's attention adds only its output bias
  r = run("forward --trace --model " + m + " --input " + in + " --output " + path("d.safetensors") +
          " --ablate blocks.0.attn.hook_z");
  ASSERT_EQ(r.code, 0) << r.err;
  for (double v : values(read(path("d.safetensors")), "blocks.0.attn.hook_z")) EXPECT_EQ(v, 0.0);
}

TEST_F(Cli, WithoutABatchAxisPatchesAndGradientsHaveNoneEither) {
  const std::string m = make_model();
  const std::string in = make_input({5, 8}, /*with_dy=*/true);
  io::SafetensorsFile pf;
  pf.add(io::from_float_tensor("whatever", Tensor<float>({5, 16}, 0.5f), io::DType::F32));  // the only tensor
  ASSERT_TRUE(io::write_safetensors(path("p.safetensors"), pf).is_ok());
  CliRun r = run("backward --model " + m + " --input " + in + " --output " + path("g.safetensors") +
                 " --hook-patch blocks.1.mlp.hook_post=" + path("p.safetensors") + " --wrt blocks.1.mlp.hook_post" +
                 " --wrt blocks.0.attn.hook_pattern --wrt blocks.0.hook_resid_pre");
  ASSERT_EQ(r.code, 0) << r.err;
  const io::SafetensorsFile g = read(path("g.safetensors"));
  EXPECT_EQ(g.find("grad.blocks.1.mlp.hook_post")->shape, (Shape{5, 16}));
  EXPECT_EQ(g.find("grad.blocks.0.attn.hook_pattern")->shape, (Shape{2, 5, 5}));
  // every element of linear2's input was replaced: nothing upstream of it is reached through the FFN of block 1
  EXPECT_EQ(values(g, "grad.blocks.0.hook_resid_pre"), values(g, "grad.x"));
  for (double v : values(g, "grad.layers.1.linear1.weight")) EXPECT_EQ(v, 0.0);
}

TEST_F(Cli, BadHookFlagsAreOneLineAndExitTwo) {
  const std::string m = make_model();
  const std::string in = make_input({2, 3, 8}, true);
  const std::string out = path("o.safetensors");
  const std::string base = " --model " + m + " --input " + in + " --output " + out;
  io::SafetensorsFile pf;
  pf.add(io::from_float_tensor("blocks.0.hook_resid_mid", Tensor<float>({3, 8}), io::DType::F32));
  ASSERT_TRUE(io::write_safetensors(path("p.safetensors"), pf).is_ok());
  expect_usage_error(run("forward" + base + " --ablate blocks.0.hook_resid_mdi"),
                     "--ablate blocks.0.hook_resid_mdi: expected an activation name of this model", out);
  expect_usage_error(run("forward" + base + " --ablate blocks.0.ln1.hook_mean"), "computed inside its norm", out);
  expect_usage_error(run("forward" + base + " --ablate blocks.0.attn.hook_z:2"), "expected a head 0..1 after the colon, got \"2\"", out);
  expect_usage_error(run("forward" + base + " --ablate blocks.0.attn.hook_z:x"), "expected a head 0..1", out);
  expect_usage_error(run("forward" + base + " --ablate blocks.0.hook_mlp_out:1"), "expected a head only on an attention activation", out);
  expect_usage_error(run("forward" + base + " --hook-patch blocks.0.hook_resid_mid"), "--hook-patch: expected NAME=FILE", out);
  expect_usage_error(run("forward" + base + " --hook-patch blocks.0.hook_resid_mid=" + path("none.safetensors")),
                     "--hook-patch blocks.0.hook_resid_mid", out);
  expect_usage_error(run("forward" + base + " --hook-patch blocks.0.hook_resid_mid=" + path("p.safetensors")),
                     "expected shape [2, 3, 8] (the activation's), got [3, 8]", out);
  pf.add(io::from_float_tensor("another", Tensor<float>({3, 8}), io::DType::F32));
  ASSERT_TRUE(io::write_safetensors(path("p2.safetensors"), pf).is_ok());
  expect_usage_error(run("forward" + base + " --hook-patch blocks.1.hook_resid_mid=" + path("p2.safetensors")),
                     "expected a tensor named blocks.1.hook_resid_mid (or a single tensor)", out);
  expect_usage_error(run("backward" + base + " --wrt blocks.0.ln2.hook_rstd"), "--wrt blocks.0.ln2.hook_rstd: computed inside its norm", out);
  expect_usage_error(run("backward" + base + " --wrt hook_embed"), "--wrt hook_embed: expected an activation name", out);
  expect_usage_error(run("forward" + base + " --threads 0"), "--threads: expected an integer >= 1, got 0", out);
  EXPECT_NE(run("forward" + base + " --wrt blocks.0.hook_resid_pre").code, 0);  // --wrt is backward's
}

}  // namespace
}  // namespace blocklab::testing
