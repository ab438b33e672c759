// The run store: every training run — config, options, seed, metrics per step, per-layer gradient
// norms every k steps, final figures, checkpoint path — in the store's database (lab/database.h: an
// SQLite file by default, or PostgreSQL). Each step is its own transaction, so a process killed at any
// moment loses no committed step. The schema of the whole store (runs, and the accounts beside them) is
// versioned and migrated forward on open, the same migrations on both backends (docs/run-store.md).
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/status.h"

#include "lab/database.h"

namespace blocklab::lab {

struct StepRecord {
  int64_t step = 0;
  double loss = NAN, accuracy = NAN;  // on the step's training batch
  double lr = 0, grad_norm = NAN;     // the learning rate used; the gradient's L2 norm before clipping
  double wall_s = 0;                  // since the run (or its resumption) started
};

struct LayerGradNorm {
  int64_t layer = 0;
  double grad_norm_params = NAN;  // L2 norm of the gradient of all of block i's parameters
  double grad_norm_resid = NAN;   // L2 norm of dLoss / d blocks.{i}.hook_resid_pre
};

struct RunRecord {
  int64_t id = 0;
  std::string created_at, updated_at;  // ISO 8601, UTC
  std::string kind = "train";
  std::string task;
  std::string experiment;  // the preset that made it, or ""
  std::string label;       // a short human name ("pre-LN, warm-up 100")
  std::string config_json, options_json;
  uint64_t seed = 0;
  // running | finished | failed | cancelled; "interrupted" when read back: a running run whose
  // process is gone (killed).
  std::string status = "running";
  int64_t steps_done = 0, steps_total = 0;
  std::optional<double> final_loss, final_accuracy;
  double wall_s = 0, tokens_per_s = 0;
  std::string checkpoint_path;
  int64_t checkpoint_step = 0;
  int64_t pid = 0;
  std::string error;
  int64_t user_id = 0;  // the account that ran it (a server job of a signed-in user); 0: none

  // Whether another live process on this machine wrote it last (a queued job in another server's queue).
  bool held_by_another_process() const;
};

class RunStore {
 public:
  static constexpr int kSchemaVersion = 4;

  // Opens (creating if needed) and migrates the store: a file path (SQLite) or a postgresql:// URL. A
  // store written by a newer blocklab is refused.
  static Result<std::unique_ptr<RunStore>> open(const std::string& where);
  // The same on a database already open (the server shares one between its stores).
  static Result<std::unique_ptr<RunStore>> open(std::shared_ptr<Database> db);
  RunStore(const RunStore&) = delete;
  RunStore& operator=(const RunStore&) = delete;

  const std::string& path() const { return db_->name(); }
  const std::shared_ptr<Database>& database() const { return db_; }
  int schema_version();
  std::string integrity_check();  // "ok" when sound

  Result<int64_t> create_run(const RunRecord& run);
  // One transaction: the step's metrics, its per-layer norms (may be empty) and runs.steps_done.
  Status append_step(int64_t run_id, const StepRecord& step, const std::vector<LayerGradNorm>& layers);
  // A resumed run forgets what came after its checkpoint and is running again.
  Status resume_run(int64_t run_id, int64_t from_step, int64_t steps_total, int64_t pid);
  Status set_checkpoint(int64_t run_id, const std::string& path, int64_t step);
  Status finish_run(int64_t run_id, const std::string& status, std::optional<double> final_loss,
                    std::optional<double> final_accuracy, double wall_s, double tokens_per_s,
                    const std::string& error = "");

  Result<std::vector<RunRecord>> list_runs();
  Result<std::vector<RunRecord>> list_runs_of(int64_t user_id);  // one account's runs
  Result<RunRecord> get_run(int64_t id);
  Result<std::vector<StepRecord>> steps(int64_t run_id);
  struct StepLayers {
    int64_t step;
    std::vector<LayerGradNorm> layers;
  };
  Result<std::vector<StepLayers>> layer_grad_norms(int64_t run_id);

  // For tests of the migrations: a store at an older schema version.
  static Result<std::unique_ptr<RunStore>> open_at_version(const std::string& where, int version);

 private:
  explicit RunStore(std::shared_ptr<Database> db) : db_(std::move(db)) {}
  static Result<std::unique_ptr<RunStore>> open_impl(std::shared_ptr<Database> db, int target_version);
  Status migrate(int target_version);
  Result<std::vector<RunRecord>> select_runs(const std::string& where, const std::vector<Value>& params);

  std::shared_ptr<Database> db_;
};

}  // namespace blocklab::lab
