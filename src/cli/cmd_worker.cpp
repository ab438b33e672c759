// blocklab worker [--db URL] [--max-jobs N] [--checkpoints DIR]: trains the store's queued jobs, serves
// nothing (contract section 9). blocklab workers [--db URL] [--all] [--json]: the processes that train them.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <thread>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "engine/blas.h"
#include "lab/run_json.h"
#include "server/jobs.h"

namespace blocklab::cli {

namespace {

double wall_s() { return lab::wall_clock_s(); }

struct WorkerArgs {
  std::string db = "blocklab.db";
  int max_jobs = 2;
  std::string checkpoint_dir;
};

int run_worker(const WorkerArgs& a) {
  const std::string cmd = "worker";
  Result<std::unique_ptr<lab::RunStore>> store = lab::RunStore::open(a.db);
  if (!store) return fail(cmd, store.status());
  set_blas_threads(1);  // one thread per job, as in serve: a job's numbers do not depend on where it runs
  install_stop_signals();
  server::JobOptions options;
  options.kind = "worker";
  options.max_running = a.max_jobs;
  options.checkpoint_dir = a.checkpoint_dir;
  server::Limits limits;
  server::JobManager jobs(*store.value(), limits, options);
  for (const std::string& line : jobs.recover()) std::fprintf(stderr, "blocklab worker: %s\n", line.c_str());
  std::fprintf(stderr, "blocklab worker: %s on %s, %d job(s) at a time; Ctrl-C stops\n", jobs.worker_id().c_str(),
               store.value()->path().c_str(), a.max_jobs);
  std::fflush(stderr);
  while (stop_signal() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::fprintf(stderr, "blocklab worker: %s: stopping (running jobs checkpoint and go back to the queue)\n",
               stop_signal() == SIGINT ? "SIGINT" : "SIGTERM");
  jobs.shutdown();
  std::fprintf(stderr, "blocklab worker: stopped\n");
  return 0;
}

struct WorkersArgs {
  std::string db = "blocklab.db";
  bool all = false, json = false;
};

int run_workers(const WorkersArgs& a) {
  const std::string cmd = "workers";
  Result<std::unique_ptr<lab::RunStore>> store = lab::RunStore::open(a.db);
  if (!store) return fail(cmd, store.status());
  Result<std::vector<lab::WorkerRecord>> workers = store.value()->workers();
  Result<int64_t> queued = store.value()->count_jobs("queued");
  Result<int64_t> running = store.value()->count_jobs("running");
  if (!workers || !queued || !running)
    return fail(cmd, !workers ? workers.status() : !queued ? queued.status() : running.status());
  const double now = wall_s();
  nlohmann::json list = nlohmann::json::array();
  for (const lab::WorkerRecord& w : workers.value())
    if (a.all || now - w.heartbeat_s < lab::kWorkerLiveS) list.push_back(lab::to_json(w, now));
  if (a.json) {
    std::cout << nlohmann::json{{"workers", list}, {"queue", {{"queued", queued.value()}, {"running", running.value()}}}}.dump(2)
              << "\n";
    return 0;
  }
  std::printf("%-40s %-7s %-8s %7s  %s\n", "worker", "kind", "pid", "jobs", "heartbeat");
  for (const nlohmann::json& w : list)
    std::printf("%-40s %-7s %-8lld %3lld/%-3lld  %.0f s ago%s\n", w["id"].get<std::string>().c_str(),
                w["kind"].get<std::string>().c_str(), (long long)w["pid"].get<int64_t>(),
                (long long)w["running"].get<int64_t>(), (long long)w["max_jobs"].get<int64_t>(),
                w["heartbeat_age_s"].get<double>(), w["live"].get<bool>() ? "" : " (gone)");
  std::printf("%zu worker(s)%s; %lld job(s) queued, %lld running\n", list.size(), a.all ? "" : " live",
              (long long)queued.value(), (long long)running.value());
  return 0;
}

}  // namespace

Runner add_worker_command(CLI::App& sub) {
  auto a = std::make_shared<WorkerArgs>();
  sub.footer("Several workers and `serve` processes share one queue on a PostgreSQL store (docs/deploy.md).");
  add_db_flag(sub, a->db, "the store whose queue it trains", true);
  sub.add_option("--max-jobs", a->max_jobs, "jobs trained at once (default 2)")->check(CLI::Range(1, 64));
  sub.add_option("--checkpoints", a->checkpoint_dir,
                 "the jobs' checkpoints, a folder every process on the store can read (default as serve's)");
  return [a] { return run_worker(*a); };
}

Runner add_workers_command(CLI::App& sub) {
  auto a = std::make_shared<WorkersArgs>();
  add_db_flag(sub, a->db, "the store", true);
  sub.add_flag("--all", a->all, "also the workers that have stopped or died (their last heartbeat)");
  sub.add_flag("--json", a->json, "JSON: {workers: [...], queue: {queued, running}}");
  return [a] { return run_workers(*a); };
}

}  // namespace blocklab::cli
