// A recorded training run: drives a Trainer, commits every step to the run store, writes a checkpoint
// every k steps and at the end, and evaluates the final model. Used by `blocklab train`, the
// experiments, and (later) the server's training jobs.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "lab/run_store.h"
#include "lab/trainer.h"

namespace blocklab::lab {

struct TrainRunSpec {
  ModelConfig config;
  TrainOptions options;
  std::string label, experiment;
  std::string checkpoint_path;   // "" : run-<id>.safetensors in checkpoint_dir
  std::string checkpoint_dir;    // "" : checkpoints/ beside the store (default_checkpoint_dir)
  int64_t checkpoint_every = 0;  // 0 : about ten checkpoints over the run (and always one at the end)
  int64_t run_id = 0;            // > 0: a run already in the store (queued by the server), started now
  int64_t user_id = 0;           // the account it belongs to (the server's signed-in user); 0: none
  // Fine-tuning (train --init): the parameters to start from instead of options.seed's initialisation, of a
  // model whose config is init_config (it must be the config the task trains: the same layout).
  std::vector<float> init_params;
  ModelConfig init_config;
  std::string init_from;  // where they came from, for messages
};

// Where checkpoints go unless a path is given: checkpoints/ beside an SQLite store, or in the working
// folder for a PostgreSQL one.
std::string default_checkpoint_dir(const RunStore& store);

// The store's record of a run about to train (status "queued" when it must wait for its turn).
RunRecord run_record(const TrainRunSpec& spec, const std::string& status);

struct TrainProgress {
  const StepRecord& step;
  const std::vector<LayerGradNorm>& layers;  // empty unless measured at this step
  int64_t steps_total;
  double tokens_per_s;  // of this session so far
  double eta_s;
};

struct TrainResult {
  int64_t run_id = 0;
  ModelConfig config;
  TrainOptions options;
  std::string status;  // finished | diverged | cancelled
  std::vector<StepRecord> history;  // every step of the run, earlier sessions included
  Evaluation final;                 // on held-out batches
  double wall_s = 0, tokens_per_s = 0;
  std::string checkpoint_path;
};

using ProgressFn = std::function<void(const TrainProgress&)>;

// Creates the run in the store and trains it. `cancel` (nullable) stops it after the current step;
// the run is then checkpointed and marked cancelled. A non-finite loss stops it as "diverged".
Result<TrainResult> run_training(RunStore& store, const TrainRunSpec& spec, const ProgressFn& on_step = {},
                                 const std::atomic<bool>* cancel = nullptr);

// Continues the run a checkpoint belongs to, in the same store, up to steps_total (0: the run's own
// total): the steps after the checkpoint are forgotten and trained again, exactly as before.
Result<TrainResult> resume_training(RunStore& store, const std::string& checkpoint_path, int64_t steps_total,
                                    int64_t checkpoint_every = 0, const ProgressFn& on_step = {},
                                    const std::atomic<bool>* cancel = nullptr);

}  // namespace blocklab::lab
