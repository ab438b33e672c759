#include "server/jobs.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "io/model_file.h"
#include "lab/trainer.h"

namespace blocklab::server {

namespace fs = std::filesystem;

// ---- Job -----------------------------------------------------------------------------------------

std::vector<std::string> Job::events_since(size_t from, int wait_ms, bool* done) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return done_ || events_.size() > from; });
  *done = done_;
  if (from >= events_.size()) return {};
  return std::vector<std::string>(events_.begin() + std::ptrdiff_t(from), events_.end());
}

void Job::publish(const std::string& event, const json& data) {
  {
    std::lock_guard lock(mu_);
    events_.push_back("event: " + event + "\ndata: " + data.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n");
  }
  cv_.notify_all();
  (*notify_)();
}

void Job::finish(const std::string& status, const json& data) {
  {
    std::lock_guard lock(mu_);
    status_ = status;
    if (data.contains("error") && data["error"].is_string()) error_ = data["error"].get<std::string>();
    events_.push_back("event: end\ndata: " + data.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n");
    done_ = true;
  }
  cv_.notify_all();
  (*notify_)();
}

std::string Job::error() {
  std::lock_guard lock(mu_);
  return error_;
}

std::string Job::status() {
  std::lock_guard lock(mu_);
  return status_;
}

void Job::set_status(const std::string& s) {
  std::lock_guard lock(mu_);
  status_ = s;
}

// ---- JobManager ----------------------------------------------------------------------------------

JobManager::JobManager(lab::RunStore& store, const Limits& limits) : store_(store), limits_(limits) {
  for (int i = 0; i < limits_.max_running_jobs; ++i) workers_.emplace_back([this] { worker(); });
}

JobManager::~JobManager() { shutdown(); }

int64_t JobManager::submit(lab::TrainRunSpec spec, const std::string& owner, int owner_limit) {
  std::lock_guard lock(mu_);
  if (stopping_) throw ApiError(503, "shutting_down", "the server is shutting down: expected no new jobs");
  if (!owner.empty() && owner_limit > 0 && active_[owner] >= owner_limit)
    throw ApiError(429, "too_many_jobs",
                   "training jobs: " + std::to_string(active_[owner]) + " of yours are queued or running (" +
                       (owner.rfind("user:", 0) == 0 ? "an account" : "anonymous use from one address") + " may have " +
                       std::to_string(owner_limit) + "): expected a retry after one finishes, or cancel one");
  if (int(queue_.size()) >= limits_.max_queued_jobs)
    throw ApiError(429, "queue_full",
                   "training queue is full (" + std::to_string(queue_.size()) + " waiting, " + std::to_string(running_) +
                       " running): expected a retry after a job finishes");
  lab::RunRecord record = lab::run_record(spec, "queued");
  record.kind = "job";  // made by the server's queue: a restarted server takes it back (recover)
  Result<int64_t> id = store_.create_run(record);
  if (!id) throw ApiError(503, "store_unavailable", id.status().message());
  spec.run_id = *id;
  auto job = std::make_shared<Job>(*id, std::move(spec), notify_);
  job->owner = owner;
  if (!owner.empty()) ++active_[owner];
  queue_.push_back(job);
  jobs_.push_back(job);
  job->publish("status", {{"status", "queued"}, {"run_id", *id}, {"position", queue_.size()}});
  cv_.notify_one();
  return *id;
}

bool JobManager::cancel(int64_t run_id) {
  std::shared_ptr<Job> job;
  {
    std::lock_guard lock(mu_);
    for (auto it = queue_.begin(); it != queue_.end(); ++it)
      if ((*it)->run_id() == run_id) {
        job = *it;
        queue_.erase(it);
        release_locked(*job);
        (void)store_.finish_run(run_id, "cancelled", std::nullopt, std::nullopt, 0, 0);
        job->finish("cancelled", {{"status", "cancelled"}, {"run_id", run_id}, {"steps", 0}});
        return true;
      }
    for (const auto& j : jobs_)
      if (j->run_id() == run_id) job = j;
  }
  if (!job) return false;
  job->cancel = true;
  return true;
}

std::shared_ptr<Job> JobManager::find(int64_t run_id) {
  std::lock_guard lock(mu_);
  for (const auto& j : jobs_)
    if (j->run_id() == run_id) return j;
  return nullptr;
}

int JobManager::running() {
  std::lock_guard lock(mu_);
  return running_;
}

int JobManager::queued() {
  std::lock_guard lock(mu_);
  return int(queue_.size());
}

void JobManager::set_on_event(std::function<void()> fn) {
  std::lock_guard lock(notify_->mu);
  notify_->fn = std::move(fn);
}

std::vector<std::string> JobManager::recover() {
  std::vector<std::string> lines;
  Result<std::vector<lab::RunRecord>> runs = store_.list_runs();
  if (!runs) return {"cannot read the run store to take back its queued runs: " + runs.status().message()};
  std::vector<lab::RunRecord> left;
  for (const lab::RunRecord& r : runs.value())
    // Queued in another live server's queue (two servers on one PostgreSQL store): that one runs it.
    if ((r.status == "queued" && !r.held_by_another_process()) || (r.kind == "job" && r.status == "interrupted"))
      left.push_back(r);
  std::sort(left.begin(), left.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  int queued = 0, resumed = 0;
  for (const lab::RunRecord& r : left) {
    lab::TrainRunSpec spec;
    Result<ModelConfig> config = io::config_from_json_text(r.config_json, "run " + std::to_string(r.id));
    const json options = json::parse(r.options_json, nullptr, false);
    Result<lab::TrainOptions> opts = options.is_discarded() ? Result<lab::TrainOptions>(Status::error("its options are not JSON"))
                                                            : lab::train_options_from_json(options);
    if (!config || !opts) {
      const std::string why = !config ? config.status().message() : opts.status().message();
      (void)store_.finish_run(r.id, "failed", std::nullopt, std::nullopt, 0, 0,
                              "the server stopped before it finished, and it could not be queued again: " + why);
      lines.push_back("run " + std::to_string(r.id) + ": left " + r.status + " by the last server, but " + why +
                      ": closed as failed");
      continue;
    }
    spec.config = config.value();
    spec.options = opts.value();
    spec.label = r.label;
    spec.experiment = r.experiment;
    spec.run_id = r.id;
    spec.user_id = r.user_id;
    std::string resume;
    std::error_code ec;
    if (r.status == "interrupted" && r.checkpoint_step > 0 && !r.checkpoint_path.empty() && fs::exists(r.checkpoint_path, ec))
      resume = r.checkpoint_path;
    (resume.empty() ? queued : resumed) += 1;
    // Queued again in the store too, so that a list shows it waiting, not interrupted.
    (void)store_.finish_run(r.id, "queued", std::nullopt, std::nullopt, 0, 0, "");
    auto job = std::make_shared<Job>(r.id, std::move(spec), notify_, resume);
    std::lock_guard lock(mu_);
    queue_.push_back(job);
    jobs_.push_back(job);
    job->publish("status", {{"status", "queued"}, {"run_id", r.id}, {"position", queue_.size()},
                            {"resumes_from_step", resume.empty() ? 0 : r.checkpoint_step}});
    cv_.notify_one();
  }
  if (queued + resumed > 0)
    lines.push_back("took back " + std::to_string(queued + resumed) + " run(s) the last server left unfinished (" +
                    std::to_string(resumed) + " from their checkpoint)");
  return lines;
}

void JobManager::shutdown() {
  std::vector<std::shared_ptr<Job>> queued;
  {
    std::lock_guard lock(mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
    queued.assign(queue_.begin(), queue_.end());
    for (const auto& j : queue_) release_locked(*j);
    queue_.clear();
    for (const auto& j : jobs_) j->cancel = true;
  }
  for (const auto& job : queued) {
    (void)store_.finish_run(job->run_id(), "cancelled", std::nullopt, std::nullopt, 0, 0, "server shut down");
    job->finish("cancelled", {{"status", "cancelled"}, {"run_id", job->run_id()}, {"steps", 0}});
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
}

void JobManager::worker() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = queue_.front();
      queue_.pop_front();
      ++running_;
    }
    run(job);
    std::lock_guard lock(mu_);
    --running_;
    release_locked(*job);
  }
}

void JobManager::release_locked(const Job& job) {
  if (job.owner.empty()) return;
  auto it = active_.find(job.owner);
  if (it != active_.end() && --it->second <= 0) active_.erase(it);
}

void JobManager::run(const std::shared_ptr<Job>& job) {
  job->set_status("running");
  job->publish("status", {{"status", "running"}, {"run_id", job->run_id()}});
  lab::ProgressFn on_step = [&](const lab::TrainProgress& p) {
    json layers = json::array();
    for (const lab::LayerGradNorm& l : p.layers)
      layers.push_back({{"layer", l.layer}, {"grad_norm_params", l.grad_norm_params}, {"grad_norm_resid", l.grad_norm_resid}});
    json data = {{"step", p.step.step},         {"steps", p.steps_total}, {"loss", p.step.loss},
                 {"accuracy", p.step.accuracy}, {"lr", p.step.lr},        {"grad_norm", p.step.grad_norm},
                 {"tokens_per_s", p.tokens_per_s}, {"eta_s", p.eta_s}};
    if (!layers.empty()) data["layers"] = layers;
    job->publish("step", data);
  };
  Result<lab::TrainResult> r =
      job->resume_checkpoint().empty()
          ? lab::run_training(store_, job->spec(), on_step, &job->cancel)
          : lab::resume_training(store_, job->resume_checkpoint(), job->spec().options.steps, 0, on_step, &job->cancel);
  if (!r) {
    (void)store_.finish_run(job->run_id(), "failed", std::nullopt, std::nullopt, 0, 0, r.status().message());
    job->finish("failed", {{"status", "failed"}, {"run_id", job->run_id()}, {"error", r.status().message()}});
    return;
  }
  job->finish(r->status, {{"status", r->status},
                          {"run_id", job->run_id()},
                          {"steps", r->history.empty() ? 0 : r->history.back().step},
                          {"final", {{"loss", r->final.loss}, {"accuracy", r->final.accuracy}}},
                          {"wall_s", r->wall_s},
                          {"tokens_per_s", r->tokens_per_s}});
}

}  // namespace blocklab::server
