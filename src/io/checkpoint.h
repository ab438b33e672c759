// Training checkpoints: a model file (PyTorch names, config) that also holds the optimizer's state
// (optimizer.exp_avg.<name>, optimizer.exp_avg_sq.<name>, as torch.optim.Adam names them) and the
// training state as JSON in __metadata__["blocklab.train"] (run id, step, task, options). Any
// command that reads a model reads a checkpoint.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/optimizer.h"
#include "engine/status.h"

namespace blocklab::io {

struct Checkpoint {
  Model<float> model;
  std::vector<float> exp_avg, exp_avg_sq;  // the optimizer's moments, in the model's layout
  nlohmann::json train;                    // the training state (must hold "step")
};

// Writes atomically. `train` must hold "step".
Status save_checkpoint(const std::string& path, const Model<float>& model, const Optimizer<float>& optimizer,
                       const nlohmann::json& train);
Result<Checkpoint> load_checkpoint(const std::string& path);

}  // namespace blocklab::io
