// Training jobs for the server: a bounded queue (429 when full) feeding a fixed number of worker
// threads, each job a recorded training run (lab/training_run.h) whose progress is kept as
// Server-Sent Events for every listener, from the first step on. Cancelling a queued job removes it;
// cancelling a running one stops it after its current step (it checkpoints and is marked cancelled).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
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

// Called on every published event (the HTTP layer's wake-up for its event streams); set once.
struct JobNotifier {
  std::mutex mu;
  std::function<void()> fn;
  void operator()() {
    std::lock_guard lock(mu);
    if (fn) fn();
  }
};

class Job {
 public:
  // resume_checkpoint: a run interrupted by a stopped server, continued from that checkpoint.
  Job(int64_t run_id, lab::TrainRunSpec spec, std::shared_ptr<JobNotifier> notify, std::string resume_checkpoint = "")
      : run_id_(run_id), spec_(std::move(spec)), notify_(std::move(notify)), resume_(std::move(resume_checkpoint)) {}
  int64_t run_id() const { return run_id_; }
  const std::string& resume_checkpoint() const { return resume_; }
  std::string owner;  // who submitted it (JobManager::submit), for the per-owner limit
  const lab::TrainRunSpec& spec() const { return spec_; }

  // SSE-formatted events ("event: step\ndata: {...}\n\n") from index `from`; waits up to `wait_ms`
  // for new ones. `done` says the job has ended and every event is in.
  std::vector<std::string> events_since(size_t from, int wait_ms, bool* done);
  void publish(const std::string& event, const json& data);
  void finish(const std::string& status, const json& data);  // publishes "end" and wakes every listener
  std::string status();
  std::string error();  // why it failed, once it has
  void set_status(const std::string& s);

  std::atomic<bool> cancel{false};

 private:
  const int64_t run_id_;
  const lab::TrainRunSpec spec_;
  const std::shared_ptr<JobNotifier> notify_;
  const std::string resume_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
  bool done_ = false;
  std::string status_ = "queued";
  std::string error_;
};

class JobManager {
 public:
  JobManager(lab::RunStore& store, const Limits& limits);
  ~JobManager();

  // Records the run as queued and queues it; throws ApiError 429 when the queue is full or `owner`
  // ("user:NAME" signed in, "address:IP" anonymous) already has `owner_limit` jobs queued or running,
  // 503 when shutting down.
  int64_t submit(lab::TrainRunSpec spec, const std::string& owner = "", int owner_limit = 0);
  // True when the run was a job of this server (queued: now cancelled; running: stopping).
  bool cancel(int64_t run_id);
  std::shared_ptr<Job> find(int64_t run_id);
  int running();
  int queued();
  // At start: queues again, under their ids, the server's jobs (kind "job") that the store left
  // "queued" (a server killed before it ran them) or "interrupted" (killed while it ran them: they
  // continue from their last checkpoint, or start again without one). Returns the lines to log; a
  // run it cannot take back is closed as failed, saying why.
  std::vector<std::string> recover();
  void set_on_event(std::function<void()> fn);
  // Cancels every job, waits for the running ones to checkpoint and stop.
  void shutdown();

 private:
  void worker();
  void run(const std::shared_ptr<Job>& job);
  void release_locked(const Job& job);  // REQUIRES: mu_ held

  lab::RunStore& store_;
  const Limits limits_;
  std::shared_ptr<JobNotifier> notify_ = std::make_shared<JobNotifier>();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::vector<std::shared_ptr<Job>> jobs_;  // every job of this server, for its listeners
  std::map<std::string, int> active_;       // queued or running jobs per owner
  int running_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace blocklab::server
