// Training one model on one task, a step at a time: the batch of step t (a function of seed and t),
// forward and backward through the language model, per-layer gradient norms when due, and an
// optimizer step. No files and no store here: lab/training_run.h drives a Trainer and keeps the record.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "engine/blas.h"
#include "engine/model.h"
#include "engine/optimizer.h"
#include "lab/run_store.h"
#include "lab/tasks.h"

namespace blocklab::lab {

struct TrainOptions {
  TaskKind task = TaskKind::copy;
  DataSpec data;  // the text task's file; the others ignore it
  int64_t steps = 200;  // total steps of the run
  int64_t batch = 32;
  int64_t seq_len = 20;
  OptimizerConfig optimizer;  // lr 1e-3, warm-up 0, weight decay 0, no clipping, AdamW
  uint64_t seed = 0;          // initialisation, batches and dropout
  int64_t grad_norm_every = 10;  // per-layer gradient norms every k steps (and at step 1); 0: never
  int64_t eval_batches = 8;      // held-out batches for the final loss and accuracy
  // The matmuls' precision (engine/blas.h): bf16 rounds the GEMMs' inputs to bfloat16; the master
  // weights, the optimizer and every other kernel stay float32.
  MatmulPrecision precision = MatmulPrecision::f32;
};

nlohmann::json to_json(const TrainOptions& options);
// Strict, as the model config: unknown keys and bad values are errors naming the key.
Result<TrainOptions> train_options_from_json(const nlohmann::json& j);
Status validate(const TrainOptions& options);

struct Evaluation {
  double loss = 0, accuracy = 0;
};

class Trainer {
 public:
  // A fresh model initialised from options.seed. config.vocab_size is set from the task (a different
  // vocab_size is an error); reverse, sort and chars get max_seq_len = seq_len unless the config sets
  // it (positions); a task whose targets are later inputs requires config.causal.
  static Result<Trainer> create(ModelConfig config, const TrainOptions& options);
  // Continues after `steps_done` steps with the given parameters and optimizer moments.
  static Result<Trainer> resume(Model<float> model, const TrainOptions& options, int64_t steps_done,
                                std::vector<float> exp_avg, std::vector<float> exp_avg_sq);

  // Runs step steps_done() + 1. `layers` receives the per-layer gradient norms when they are due
  // (step 1 and every grad_norm_every steps), else is cleared.
  StepRecord step(std::vector<LayerGradNorm>* layers);
  // Mean loss and accuracy over options().eval_batches held-out batches (no dropout).
  Evaluation evaluate();

  int64_t steps_done() const { return optimizer_.steps_done(); }
  const TrainOptions& options() const { return options_; }
  const Task& task() const { return task_; }
  Model<float>& model() { return model_; }
  const Model<float>& model() const { return model_; }
  const Optimizer<float>& optimizer() const { return optimizer_; }

 private:
  Trainer(Model<float> model, Task task, const TrainOptions& options);
  // Fraction of target positions whose highest logit is the target.
  double accuracy(const std::vector<int32_t>& targets) const;
  std::vector<LayerGradNorm> layer_grad_norms() const;

  Model<float> model_;
  Task task_;
  TrainOptions options_;
  Optimizer<float> optimizer_;
  std::vector<std::vector<std::pair<int64_t, int64_t>>> layer_ranges_;  // per block: (offset, numel) of its parameters
};

// The model config a run of `options` trains: the task's vocabulary, positions for the tasks that need
// them; an error for what cannot train (a vocabulary of another size, chars without a causal mask).
Result<ModelConfig> training_config(ModelConfig config, const TrainOptions& options);

// The fraction of rows of logits [N, V] whose argmax is the target.
double argmax_accuracy(const std::vector<float>& logits, const std::vector<int32_t>& targets, int64_t vocab);

}  // namespace blocklab::lab
