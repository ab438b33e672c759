// The run store: every training run — config, options, seed, metrics per step, per-layer gradient
// norms every k steps, final figures, checkpoint path — in the store's database (lab/database.h: an
// SQLite file by default, or PostgreSQL). Each step is its own transaction, so a process killed at any
// moment loses no committed step. The schema of the whole store (runs, and the accounts beside them) is
// versioned and migrated forward on open, the same migrations on both backends (docs/run-store.md).
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
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
  // Server jobs (kind "job") wait in the store's queue and are leased to the process that trains them.
  std::string owner;        // whose quota it counts against: "user:NAME", "address:IP", or ""
  std::string lease_owner;  // the worker (WorkerRecord::id) training it, while it is running
  double lease_until_s = 0; // the lease runs out then unless renewed (Unix time)
  double queued_s = 0, started_s = 0;
  int64_t attempts = 0;     // how many times a worker has claimed it
  bool cancel_requested = false;
};

// A process that trains the store's queued jobs (`serve` unless --no-jobs, or `worker`), as its
// heartbeat row says. Live while its heartbeat is recent.
struct WorkerRecord {
  std::string id;  // host:pid:random
  std::string host, kind;  // kind: serve | worker
  int64_t pid = 0, max_jobs = 0, running = 0;
  std::string started_at;
  double heartbeat_s = 0;
};

// A worker whose heartbeat (every 5 s) is older than this is gone.
inline constexpr double kWorkerLiveS = 15;

// One event of a run's stream (Server-Sent Events), in the order it was published.
struct RunEvent {
  int64_t seq = 0;
  std::string event, data;
};

// This machine's name, as workers record it.
std::string host_name();
// A worker id for this process: host:pid:random.
std::string new_worker_id();
// Whether the holder of a lease is gone: its lease ran out, or it is a process of this host that has died.
bool lease_lost(const RunRecord& r, double now_s);

class RunStore {
 public:
  static constexpr int kSchemaVersion = 6;

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

  // ---- the job queue: the server's training jobs (kind "job"), shared by every process on the store ----
  enum class Admission { admitted, owner_full, queue_full };
  struct Admitted {
    Admission admission = Admission::admitted;
    int64_t run_id = 0;
    int64_t owner_active = 0, queued = 0;  // when refused: the owner's jobs queued or running; jobs queued
  };
  // Records a queued job and its first event (a "status" event, first_event(run_id) its data) in one
  // transaction, unless run.owner already has owner_limit jobs queued or running (0: no limit) or
  // max_queued jobs wait in all.
  Result<Admitted> enqueue_job(const RunRecord& run, int owner_limit, int max_queued, double now_s,
                               const std::function<std::string(int64_t)>& first_event);
  // The next queued job in fair order (owners with fewest running jobs first, then the one served
  // longest ago, then the oldest job), leased to `worker` until now + lease_s; nullopt when none waits.
  // Atomic across processes (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: the write lock).
  Result<std::optional<RunRecord>> claim_job(const std::string& worker, int64_t pid, double now_s, double lease_s);
  struct Leases {
    std::vector<int64_t> held;              // jobs `worker` still holds
    std::vector<int64_t> cancel_requested;  // of those, the ones someone asked to cancel
  };
  // Extends every lease `worker` holds to now + lease_s.
  Result<Leases> renew_leases(const std::string& worker, double now_s, double lease_s);
  // Puts back in the queue the running jobs whose holder is gone (lease_lost); returns their ids.
  Result<std::vector<int64_t>> requeue_lost(double now_s);
  // A job `worker` holds goes back to the queue (its process stops; it resumes from its checkpoint).
  Status release_job(int64_t run_id, const std::string& worker);
  // Cancel: a queued job is cancelled at once (returns "cancelled", with its end event); a running one
  // is asked to stop ("cancelling": its worker sees the flag); anything else is left ("" + its status).
  Result<std::string> request_cancel(int64_t run_id, const std::string& end_event_data);
  // Queued jobs in the order they would be claimed now.
  Result<std::vector<RunRecord>> queue();
  Result<int64_t> count_jobs(const std::string& status);

  // Writes to a fenced run succeed only while `worker` holds its lease (a worker that lost it, say
  // after a pause longer than the lease, cannot overwrite what the new holder writes).
  void fence(int64_t run_id, const std::string& worker);
  void unfence(int64_t run_id);

  // ---- run events (what a run's event stream sends, from any process) ----
  Result<int64_t> append_event(int64_t run_id, const std::string& event, const std::string& data);
  Result<std::vector<RunEvent>> events(int64_t run_id, int64_t after_seq);

  // ---- workers ----
  Status heartbeat(const WorkerRecord& w);
  Status remove_worker(const std::string& id);
  Result<std::vector<WorkerRecord>> workers();

  // For tests of the migrations: a store at an older schema version.
  static Result<std::unique_ptr<RunStore>> open_at_version(const std::string& where, int version);

 private:
  explicit RunStore(std::shared_ptr<Database> db) : db_(std::move(db)) {}
  std::string fence_of(int64_t run_id);
  static Result<std::unique_ptr<RunStore>> open_impl(std::shared_ptr<Database> db, int target_version);
  Status migrate(int target_version);
  Result<std::vector<RunRecord>> select_runs(const std::string& where, const std::vector<Value>& params);

  std::shared_ptr<Database> db_;
  std::mutex fence_mu_;
  std::map<int64_t, std::string> fences_;
};

}  // namespace blocklab::lab
