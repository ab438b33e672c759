// blocklab gradflow [model flags] [--batch 32] [--seq-len 20] [--seed 0] [--json | --csv]
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "lab/gradflow.h"

namespace blocklab::cli {

namespace {

struct GradflowArgs {
  ModelFlags model;
  int64_t batch = 32, seq_len = 20;
  uint64_t seed = 0;
  bool json = false, csv = false;
  std::string dtype = "f32";
};

int run_gradflow(const GradflowArgs& a) {
  const std::string cmd = "gradflow";
  Result<ModelConfig> config = resolve_model_config(a.model);
  if (!config) return fail(cmd, config.status());
  Result<lab::GradFlowResult> r = lab::measure_gradient_flow(config.value(), a.batch, a.seq_len, a.seed, a.dtype == "f64");
  if (!r) return fail(cmd, r.status());
  if (a.json) {
    std::cout << lab::to_json(r.value()).dump() << std::endl;
  } else if (a.csv) {
    std::printf("layer,grad_norm_params,grad_norm_resid,act_mean,act_std\n");
    for (const lab::GradFlowLayer& l : r->layers)
      std::printf("%lld,%.9g,%.9g,%.9g,%.9g\n", (long long)l.layer, l.grad_norm_params, l.grad_norm_resid, l.act_mean,
                  l.act_std);
  } else {
    std::printf("loss at initialisation: %.4f (copy task, batch %lld x %lld, seed %llu)\n", r->loss,
                (long long)a.batch, (long long)a.seq_len, (unsigned long long)a.seed);
    std::printf("%6s %18s %18s %12s %12s\n", "layer", "grad_norm_params", "grad_norm_resid", "act_mean", "act_std");
    for (const lab::GradFlowLayer& l : r->layers)
      std::printf("%6lld %18.6g %18.6g %12.5g %12.5g\n", (long long)l.layer, l.grad_norm_params, l.grad_norm_resid,
                  l.act_mean, l.act_std);
  }
  return 0;
}

}  // namespace

Runner add_gradflow_command(CLI::App& sub) {
  auto a = std::make_shared<GradflowArgs>();
  sub.footer(
      "At initialisation, on the language-model wrapper (vocabulary 10) with the copy task's cross-entropy on one\n"
      "random batch: per block i (0 nearest the input) the L2 norm of the gradient of all its parameters, of\n"
      "dLoss/d blocks.{i}.hook_resid_pre, and the mean and standard deviation of blocks.{i}.hook_resid_post.");
  add_model_flags(sub, a->model, /*config_required=*/false);
  sub.add_option("--batch", a->batch, "sequences (default 32)");
  sub.add_option("--seq-len", a->seq_len, "tokens per sequence (default 20)");
  sub.add_option("--seed", a->seed, "seed of the initialisation and the batch (default 0)");
  auto* json = sub.add_flag("--json", a->json, "print the contract's JSON");
  sub.add_flag("--csv", a->csv, "print CSV")->excludes(json);
  add_dtype_flag(sub, a->dtype);
  return [a] { return run_gradflow(*a); };
}

}  // namespace blocklab::cli
