#include "server/jobs.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "io/model_file.h"
#include "lab/trainer.h"

namespace blocklab::server {

namespace fs = std::filesystem;

namespace {

double now_s() { return lab::wall_clock_s(); }

std::string dump(const json& data) { return data.dump(-1, ' ', false, json::error_handler_t::replace); }
std::string sse(const std::string& event, const std::string& data) { return "event: " + event + "\ndata: " + data + "\n\n"; }

constexpr size_t kFinishedKept = 256;  // finished local jobs remembered (their in-memory status)

}  // namespace

// ---- RunFeed -------------------------------------------------------------------------------------

std::vector<std::string> RunFeed::events_since(size_t from, bool* done) {
  last_read_s = now_s();
  std::lock_guard lock(mu_);
  *done = done_;
  if (from >= events_.size()) return {};
  return std::vector<std::string>(events_.begin() + std::ptrdiff_t(from), events_.end());
}

bool RunFeed::add(const std::vector<lab::RunEvent>& events) {
  std::lock_guard lock(mu_);
  bool any = false;
  for (const lab::RunEvent& e : events) {
    if (e.seq != last_seq_ + 1 || done_) continue;
    events_.push_back(sse(e.event, e.data));
    last_seq_ = e.seq;
    done_ = e.event == "end";
    any = true;
  }
  return any;
}

void RunFeed::add_unstored(const std::string& event, const std::string& data) {
  std::lock_guard lock(mu_);
  if (done_) return;
  events_.push_back(sse(event, data));
  done_ = event == "end";
}

int64_t RunFeed::last_seq() {
  std::lock_guard lock(mu_);
  return last_seq_;
}

bool RunFeed::done() {
  std::lock_guard lock(mu_);
  return done_;
}

// ---- JobManager ----------------------------------------------------------------------------------

JobManager::JobManager(lab::RunStore& store, const Limits& limits, JobOptions options)
    : store_(store),
      limits_(limits),
      options_(std::move(options)),
      worker_id_(lab::new_worker_id()),
      started_at_(lab::now_utc()) {
  listener_ = store_.database()->listen([this](const std::string& payload) { on_notification(payload); });
  if (options_.run_jobs)  // listed at once, before the first tick
    (void)store_.heartbeat({worker_id_, lab::host_name(), options_.kind, int64_t(::getpid()),
                            int64_t(options_.max_running), 0, started_at_, now_s()});
  if (options_.run_jobs)
    for (int i = 0; i < options_.max_running; ++i) workers_.emplace_back([this] { worker_loop(); });
  maintenance_ = std::thread([this] { maintenance_loop(); });
}

JobManager::~JobManager() { shutdown(); }

void JobManager::set_on_event(std::function<void()> fn) {
  std::lock_guard lock(notify_->mu);
  notify_->fn = std::move(fn);
}

std::string JobManager::checkpoint_path(int64_t run_id) const {
  const std::string dir = options_.checkpoint_dir.empty() ? lab::default_checkpoint_dir(store_) : options_.checkpoint_dir;
  return (fs::path(dir) / ("run-" + std::to_string(run_id) + ".safetensors")).string();
}

int64_t JobManager::submit(lab::TrainRunSpec spec, const std::string& owner, int owner_limit) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) throw ApiError(503, "shutting_down", "the server is shutting down: expected no new jobs");
  }
  lab::RunRecord record = lab::run_record(spec, "queued");
  record.owner = owner;
  Result<lab::RunStore::Admitted> a =
      store_.enqueue_job(record, owner.empty() ? 0 : owner_limit, limits_.max_queued_jobs, now_s(), [](int64_t id) {
        return dump({{"status", "queued"}, {"run_id", id}});
      });
  if (!a) throw ApiError(503, "store_unavailable", a.status().message());
  switch (a->admission) {
    case lab::RunStore::Admission::owner_full:
      throw ApiError(429, "too_many_jobs",
                     "training jobs: " + std::to_string(a->owner_active) + " of yours are queued or running (" +
                         (owner.rfind("user:", 0) == 0 ? "an account" : "anonymous use from one address") + " may have " +
                         std::to_string(owner_limit) + "): expected a retry after one finishes, or cancel one");
    case lab::RunStore::Admission::queue_full:
      throw ApiError(429, "queue_full",
                     "training queue is full (" + std::to_string(a->queued) +
                         " waiting): expected a retry after a job finishes");
    case lab::RunStore::Admission::admitted:
      break;
  }
  {
    std::lock_guard lock(mu_);
    job_hint_ = true;
  }
  work_cv_.notify_all();
  return a->run_id;
}

std::string JobManager::cancel(int64_t run_id) {
  if (std::shared_ptr<LocalJob> job = local(run_id); job && job->status() == "running") job->cancel = true;
  Result<std::string> r = store_.request_cancel(
      run_id, dump({{"status", "cancelled"}, {"run_id", run_id}, {"steps", 0}}));
  if (!r) throw ApiError(503, "store_unavailable", r.status().message());
  if (r.value() == "cancelled") {
    std::shared_ptr<RunFeed> f;
    {
      std::lock_guard lock(mu_);
      if (auto it = feeds_.find(run_id); it != feeds_.end()) f = it->second;
    }
    if (f) refresh(f);
  }
  return r.value();
}

std::shared_ptr<LocalJob> JobManager::local(int64_t run_id) {
  std::lock_guard lock(mu_);
  auto it = local_.find(run_id);
  return it == local_.end() ? nullptr : it->second;
}

std::shared_ptr<RunFeed> JobManager::feed(int64_t run_id) {
  std::shared_ptr<RunFeed> f;
  {
    std::lock_guard lock(mu_);
    auto it = feeds_.find(run_id);
    if (it != feeds_.end()) f = it->second;
  }
  if (f) {
    f->last_read_s = now_s();
    return f;
  }
  auto fresh = std::make_shared<RunFeed>(run_id);
  fresh->last_read_s = now_s();
  Result<std::vector<lab::RunEvent>> events = store_.events(run_id, 0);
  if (!events) return nullptr;
  fresh->add(events.value());
  std::lock_guard lock(mu_);
  auto [it, inserted] = feeds_.emplace(run_id, fresh);
  return it->second;
}

void JobManager::refresh(const std::shared_ptr<RunFeed>& feed) {
  Result<std::vector<lab::RunEvent>> events = store_.events(feed->run_id(), feed->last_seq());
  if (events && feed->add(events.value())) (*notify_)();
}

void JobManager::publish(int64_t run_id, const std::string& event, const json& data) {
  const std::string text = dump(data);
  Result<int64_t> seq = store_.append_event(run_id, event, text);
  std::shared_ptr<RunFeed> f;
  {
    std::lock_guard lock(mu_);
    if (auto it = feeds_.find(run_id); it != feeds_.end()) f = it->second;
  }
  if (!f) return;
  if (!seq) f->add_unstored(event, text);
  else if (!f->add({{seq.value(), event, text}})) refresh(f);  // it missed some: read them from the store
  (*notify_)();
}

void JobManager::publish_requeued(int64_t run_id) {
  Result<lab::RunRecord> r = store_.get_run(run_id);
  publish(run_id, "status", {{"status", "queued"}, {"run_id", run_id}, {"requeued", true},
                             {"resumes_from_step", r ? r->checkpoint_step : 0}});
}

void JobManager::on_notification(const std::string& payload) {
  {
    std::lock_guard lock(mu_);
    if (payload == "job" || payload.empty()) job_hint_ = true;
    if (payload.rfind("e:", 0) == 0) dirty_.push_back(std::strtoll(payload.c_str() + 2, nullptr, 10));
    if (payload.empty())
      for (const auto& [id, f] : feeds_) dirty_.push_back(id);
    tick_hint_ = true;
  }
  work_cv_.notify_all();
  tick_cv_.notify_all();
}

int JobManager::running() {
  std::lock_guard lock(mu_);
  return running_;
}

int JobManager::queued() {
  Result<int64_t> n = store_.count_jobs("queued");
  return n ? int(n.value()) : -1;
}

std::vector<std::string> JobManager::recover() {
  Result<std::vector<int64_t>> back = store_.requeue_lost(now_s());
  if (!back) return {"cannot read the store to take back the jobs of stopped servers: " + back.status().message()};
  for (int64_t id : back.value()) publish_requeued(id);
  if (back->empty()) return {};
  return {"put back in the queue " + std::to_string(back->size()) +
          " job(s) that a stopped process was training (they resume from their last checkpoint)"};
}

void JobManager::worker_loop() {
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    Result<std::optional<lab::RunRecord>> claimed = store_.claim_job(worker_id_, ::getpid(), now_s(), options_.lease_s);
    if (claimed && claimed.value()) {
      run(*claimed.value());
      continue;
    }
    std::unique_lock lock(mu_);
    work_cv_.wait_for(lock, std::chrono::duration<double>(options_.tick_s), [&] { return stopping_ || job_hint_; });
    job_hint_ = false;
  }
}

void JobManager::run(const lab::RunRecord& r) {
  auto job = std::make_shared<LocalJob>();
  job->run_id = r.id;
  {
    std::lock_guard lock(mu_);
    local_[r.id] = job;
    ++running_;
    for (auto it = local_.begin(); it != local_.end() && local_.size() > kFinishedKept + size_t(running_);)
      it = it->second->status() == "running" ? std::next(it) : local_.erase(it);
    if (stopping_) job->stopping = job->cancel = true;
  }
  store_.fence(r.id, worker_id_);
  auto done = [&](const std::string& status, const std::string& error = "") {
    job->set_status(status, error);
    store_.unfence(r.id);
    std::lock_guard lock(mu_);
    --running_;
  };

  lab::TrainRunSpec spec;
  Result<ModelConfig> config = io::config_from_json_text(r.config_json, "run " + std::to_string(r.id));
  const json options = json::parse(r.options_json, nullptr, false);
  Result<lab::TrainOptions> opts = options.is_discarded() ? Result<lab::TrainOptions>(Status::error("its options are not JSON"))
                                                          : lab::train_options_from_json(options);
  if (!config || !opts) {
    const std::string why = "the job cannot be trained: " + (!config ? config.status() : opts.status()).message();
    (void)store_.finish_run(r.id, "failed", std::nullopt, std::nullopt, 0, 0, why);
    publish(r.id, "end", {{"status", "failed"}, {"run_id", r.id}, {"error", why}});
    return done("failed", why);
  }
  spec.config = config.value();
  spec.options = opts.value();
  spec.label = r.label;
  spec.experiment = r.experiment;
  spec.run_id = r.id;
  spec.user_id = r.user_id;
  spec.checkpoint_path = r.checkpoint_path.empty() ? checkpoint_path(r.id) : r.checkpoint_path;
  std::error_code ec;
  const bool resume = r.checkpoint_step > 0 && !r.checkpoint_path.empty() && fs::exists(r.checkpoint_path, ec);

  publish(r.id, "status", {{"status", "running"}, {"run_id", r.id}, {"worker", worker_id_}, {"attempt", r.attempts},
                           {"resumes_from_step", resume ? r.checkpoint_step : 0}});
  lab::ProgressFn on_step = [&](const lab::TrainProgress& p) {
    json layers = json::array();
    for (const lab::LayerGradNorm& l : p.layers)
      layers.push_back({{"layer", l.layer}, {"grad_norm_params", l.grad_norm_params}, {"grad_norm_resid", l.grad_norm_resid}});
    json data = {{"step", p.step.step},         {"steps", p.steps_total}, {"loss", p.step.loss},
                 {"accuracy", p.step.accuracy}, {"lr", p.step.lr},        {"grad_norm", p.step.grad_norm},
                 {"tokens_per_s", p.tokens_per_s}, {"eta_s", p.eta_s}};
    if (!layers.empty()) data["layers"] = layers;
    publish(r.id, "step", data);
  };
  Result<lab::TrainResult> result =
      resume ? lab::resume_training(store_, r.checkpoint_path, spec.options.steps, 0, on_step, &job->cancel)
             : lab::run_training(store_, spec, on_step, &job->cancel);
  if (!result) {
    // A write refused by the fence: another process holds the job now, and says what happens to it.
    Result<lab::RunRecord> now = store_.get_run(r.id);
    if (now && now->lease_owner != worker_id_ && (now->status == "running" || now->status == "queued"))
      return done("lost", result.status().message());
    (void)store_.finish_run(r.id, "failed", std::nullopt, std::nullopt, 0, 0, result.status().message());
    publish(r.id, "end", {{"status", "failed"}, {"run_id", r.id}, {"error", result.status().message()}});
    return done("failed", result.status().message());
  }
  if (result->status == "cancelled" && job->stopping && !job->lost) {
    // Stopped by its process, not by a user: back in the queue, to resume from this checkpoint.
    Status back = store_.release_job(r.id, worker_id_);
    if (back) {
      publish_requeued(r.id);
      return done("queued");
    }
  }
  publish(r.id, "end", {{"status", result->status},
                        {"run_id", r.id},
                        {"steps", result->history.empty() ? 0 : result->history.back().step},
                        {"final", {{"loss", result->final.loss}, {"accuracy", result->final.accuracy}}},
                        {"wall_s", result->wall_s},
                        {"tokens_per_s", result->tokens_per_s}});
  done(result->status);
}

void JobManager::maintenance_loop() {
  double last_beat = -1e9, last_reap = -1e9, last_poll = -1e9;
  for (;;) {
    std::vector<int64_t> dirty;
    bool stop;
    {
      std::unique_lock lock(mu_);
      tick_cv_.wait_for(lock, std::chrono::duration<double>(options_.tick_s), [&] { return tick_hint_ || stopping_; });
      tick_hint_ = false;
      dirty.swap(dirty_);
      stop = stopping_ && running_ == 0;
    }
    if (stop) return;
    const double now = now_s();
    if (options_.run_jobs) {
      // Leases: renewed every tick; a job no longer held was lost, one asked to stop is cancelled.
      Result<lab::RunStore::Leases> leases = store_.renew_leases(worker_id_, now, options_.lease_s);
      if (leases) {
        std::vector<std::shared_ptr<LocalJob>> unheld;
        {
          std::lock_guard lock(mu_);
          const auto& held = leases->held;
          const auto& asked = leases->cancel_requested;
          for (const auto& [id, job] : local_) {
            if (job->status() != "running") continue;
            if (std::find(asked.begin(), asked.end(), id) != asked.end()) job->cancel = true;
            if (std::find(held.begin(), held.end(), id) == held.end()) unheld.push_back(job);
          }
        }
        for (const auto& job : unheld) {  // finished just now, or taken by another process
          Result<lab::RunRecord> r = store_.get_run(job->run_id);
          if (r && r->lease_owner != worker_id_ && (r->status == "running" || r->status == "queued"))
            job->lost = job->cancel = true;
        }
      }
      if (now - last_beat >= 5) {
        last_beat = now;
        (void)store_.heartbeat({worker_id_, lab::host_name(), options_.kind, int64_t(::getpid()),
                                int64_t(options_.max_running), int64_t(running()), started_at_, now});
      }
    }
    if (now - last_reap >= 5) {  // any process puts back the jobs of the processes that are gone
      last_reap = now;
      Result<std::vector<int64_t>> back = store_.requeue_lost(now);
      if (back)
        for (int64_t id : back.value()) publish_requeued(id);
    }
    // Feeds: those with news now; every feed still open on a slower poll (notifications can be missed,
    // and SQLite has none across processes).
    std::vector<std::shared_ptr<RunFeed>> todo;
    const bool poll_all = now - last_poll >= (listener_ ? 5.0 : options_.tick_s);
    {
      std::lock_guard lock(mu_);
      for (auto it = feeds_.begin(); it != feeds_.end();) {
        const std::shared_ptr<RunFeed>& f = it->second;
        const double idle = now - f->last_read_s;
        if ((f->done() && idle > 30) || idle > 300) {
          it = feeds_.erase(it);
          continue;
        }
        const bool news = std::find(dirty.begin(), dirty.end(), it->first) != dirty.end();
        if (!f->done() && (news || poll_all)) todo.push_back(f);
        ++it;
      }
    }
    if (poll_all) last_poll = now;
    for (const auto& f : todo) refresh(f);
  }
}

void JobManager::shutdown() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && workers_.empty() && !maintenance_.joinable()) return;
    stopping_ = true;
    for (const auto& [id, job] : local_)
      if (job->status() == "running") job->stopping = job->cancel = true;
  }
  work_cv_.notify_all();
  tick_cv_.notify_all();
  for (std::thread& t : workers_) t.join();  // each running job checkpoints and goes back to the queue
  workers_.clear();
  tick_cv_.notify_all();
  if (maintenance_.joinable()) maintenance_.join();
  listener_.reset();
  if (options_.run_jobs) (void)store_.remove_worker(worker_id_);
}

}  // namespace blocklab::server
