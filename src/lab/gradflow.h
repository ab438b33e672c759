// Gradient flow and activation drift at initialisation (the contract's `gradflow`): the language-model
// wrapper (vocabulary 10) freshly initialised from a seed, the copy-task cross-entropy on one random
// batch, and per block i: the L2 norm of the gradient of all its parameters, the L2 norm of
// dLoss / d blocks.{i}.hook_resid_pre, and the mean and standard deviation of blocks.{i}.hook_resid_post.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "engine/config.h"
#include "engine/status.h"

namespace blocklab::lab {

struct GradFlowLayer {
  int64_t layer = 0;
  double grad_norm_params = 0, grad_norm_resid = 0, act_mean = 0, act_std = 0;
};

struct GradFlowResult {
  ModelConfig config;  // as measured (vocab_size 10)
  int64_t batch = 0, seq_len = 0;
  uint64_t seed = 0;
  double loss = 0;
  std::vector<GradFlowLayer> layers;  // layer 0 nearest the input
};

// config.vocab_size must be null or 10. Works in float64 when `exact`, else float32 (the default).
Result<GradFlowResult> measure_gradient_flow(ModelConfig config, int64_t batch, int64_t seq_len, uint64_t seed,
                                             bool exact = false);

// The contract's JSON: {"config", "layers": [{"layer", "grad_norm_params", "grad_norm_resid", "act_mean",
// "act_std"}, ...]} plus "batch", "seq_len", "seed" and "loss".
nlohmann::json to_json(const GradFlowResult& result);

}  // namespace blocklab::lab
