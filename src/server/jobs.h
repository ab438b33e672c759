// Training jobs, with the queue in the store (lab/run_store.h), so that any number of processes on one
// store share it (contract section 9): `serve` submits, cancels and streams; every process that runs
// jobs (`serve` unless --no-jobs, `blocklab worker`) claims the next one in fair order when it has a
// free slot, holds a lease on it that it renews while it trains, and writes its progress to the store
// as events. A process that dies loses its leases; any other puts its jobs back in the queue and the next
// claimer resumes them from their last checkpoint. Writes to a run are fenced by its lease, so a job is
// never trained by two processes at once. Stopping a process puts its running jobs back in the queue.
//
// Wake-ups: PostgreSQL's NOTIFY (new job, new events, cancel) through one listening connection; on
// SQLite (one process) in-process calls, and every process polls once a second too.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lab/training_run.h"
#include "server/api_input.h"

namespace blocklab::server {

// Called on every event this process reads or writes (the HTTP layer's wake-up for its event streams).
struct JobNotifier {
  std::mutex mu;
  std::function<void()> fn;
  void operator()() {
    std::lock_guard lock(mu);
    if (fn) fn();
  }
};

// One run's events as this process has read them from the store, SSE-formatted ("event: step\ndata:
// {...}\n\n"), for every watcher here.
class RunFeed {
 public:
  explicit RunFeed(int64_t run_id) : run_id_(run_id) {}
  int64_t run_id() const { return run_id_; }
  // Events from index `from`; `done` once the "end" event is in.
  std::vector<std::string> events_since(size_t from, bool* done);
  // Appends the store's events that follow the last one held (others are ignored); true if any did.
  bool add(const std::vector<lab::RunEvent>& events);
  // An event the store would not take (a full disk): this process's watchers still get it.
  void add_unstored(const std::string& event, const std::string& data);
  int64_t last_seq();
  bool done();
  std::atomic<double> last_read_s{0};  // when a watcher last asked (feeds nobody reads are dropped)

 private:
  const int64_t run_id_;
  std::mutex mu_;
  std::vector<std::string> events_;
  int64_t last_seq_ = 0;
  bool done_ = false;
};

// A job this process is training.
struct LocalJob {
  int64_t run_id = 0;
  std::atomic<bool> cancel{false};  // stop after the current step (the trainer checkpoints)
  std::atomic<bool> lost{false};    // its lease was lost: another process has it now; write nothing more
  std::atomic<bool> stopping{false};  // the process is stopping: put it back in the queue
  // What this process knows, should the store not take a write (a full disk).
  void set_status(const std::string& status, const std::string& error = "") {
    std::lock_guard lock(mu_);
    status_ = status;
    error_ = error;
  }
  std::string status() {
    std::lock_guard lock(mu_);
    return status_;
  }
  std::string error() {
    std::lock_guard lock(mu_);
    return error_;
  }

 private:
  std::mutex mu_;
  std::string status_ = "running", error_;
};

struct JobOptions {
  bool run_jobs = true;        // false: `serve --no-jobs` (submits and streams, trains nothing)
  int max_running = 2;         // jobs this process trains at once
  std::string kind = "serve";  // serve | worker, as the workers table shows it
  std::string checkpoint_dir;  // "" : beside an SQLite store, ./checkpoints for PostgreSQL
  double lease_s = 20;         // a lease not renewed for this long is lost
  double tick_s = 1;           // how often leases are renewed and the store polled
};

class JobManager {
 public:
  JobManager(lab::RunStore& store, const Limits& limits, JobOptions options = {});
  ~JobManager();

  // Records the run as queued in the store; throws ApiError 429 when the queue is full or `owner`
  // ("user:NAME" signed in, "address:IP" anonymous) already has `owner_limit` jobs queued or running
  // (counted over every process on the store), 503 when shutting down or when the store fails.
  int64_t submit(lab::TrainRunSpec spec, const std::string& owner = "", int owner_limit = 0);
  // "cancelled" (it was queued), "cancelling" (it is running, here or elsewhere: it stops after its
  // current step), or "" (it is neither).
  std::string cancel(int64_t run_id);
  // The run's event feed, filled from the store (nullptr when the store cannot be read).
  std::shared_ptr<RunFeed> feed(int64_t run_id);
  // This process's job for the run, if it trains (or trained) it.
  std::shared_ptr<LocalJob> local(int64_t run_id);
  int running();  // jobs this process trains now
  int queued();   // jobs waiting in the store's queue (every process's); -1 when it cannot be read
  const std::string& worker_id() const { return worker_id_; }
  // At start: puts back in the queue the jobs of processes that are gone. Lines to log.
  std::vector<std::string> recover();
  void set_on_event(std::function<void()> fn);
  // Stops claiming; running jobs checkpoint and go back to the queue; waits for them.
  void shutdown();

 private:
  void worker_loop();
  void maintenance_loop();
  void run(const lab::RunRecord& claimed);
  void publish(int64_t run_id, const std::string& event, const json& data);
  void publish_requeued(int64_t run_id);  // back in the queue: "status" queued, requeued, resumes_from_step
  void refresh(const std::shared_ptr<RunFeed>& feed);
  void on_notification(const std::string& payload);
  std::string checkpoint_path(int64_t run_id) const;

  lab::RunStore& store_;
  const Limits limits_;
  const JobOptions options_;
  const std::string worker_id_;
  const std::string started_at_;
  std::shared_ptr<JobNotifier> notify_ = std::make_shared<JobNotifier>();

  std::mutex mu_;
  std::condition_variable work_cv_;   // a job may be waiting
  std::condition_variable tick_cv_;   // something for the maintenance thread
  bool stopping_ = false;
  bool job_hint_ = false, tick_hint_ = false;
  std::map<int64_t, std::shared_ptr<LocalJob>> local_;  // this process's jobs (running, and the last finished)
  std::map<int64_t, std::shared_ptr<RunFeed>> feeds_;
  std::vector<int64_t> dirty_;  // feeds with news (notifications)
  int running_ = 0;

  std::vector<std::thread> workers_;
  std::thread maintenance_;
  std::unique_ptr<lab::Database::Listener> listener_;
};

}  // namespace blocklab::server
