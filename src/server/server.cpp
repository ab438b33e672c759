#include "server/server.h"

#include <sodium.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "engine/blas.h"
#include "io/model_file.h"
#include "lab/gradflow.h"
#include "lab/run_json.h"
#include "lab/trainer.h"
#include "server/compute.h"
#include "server/handlers.h"
#include "server/http.h"

namespace blocklab::server {

namespace {

namespace fs = std::filesystem;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}


// A run as the store has it, with what this server knows better: a job that ended while the store
// could not be written (a full disk) is still "running" there.
void overlay_job(lab::RunRecord& r, JobManager& jobs) {
  if (r.status != "running" && r.status != "queued" && r.status != "interrupted") return;
  std::shared_ptr<LocalJob> job = jobs.local(r.id);
  if (!job) return;
  const std::string live = job->status();
  if (live != r.status && live != "queued" && live != "running" && live != "lost") {
    r.status = live;
    if (r.error.empty()) r.error = job->error();
  }
}

// The processes training the store's jobs now (heartbeat within kWorkerLiveS).
json live_workers(lab::RunStore& store) {
  json out = json::array();
  Result<std::vector<lab::WorkerRecord>> workers = store.workers();
  if (!workers) return out;
  const double now = lab::wall_clock_s();
  for (const lab::WorkerRecord& w : workers.value())
    if (now - w.heartbeat_s < lab::kWorkerLiveS) out.push_back(lab::to_json(w, now));
  return out;
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string beside_source(const std::string& rel) {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path p = exe.parent_path().parent_path() / rel;
    if (fs::exists(p)) return p.string();
  }
  return (fs::current_path() / rel).string();
}

Result<std::unique_ptr<Server>> Server::create(const ServerOptions& options) {
  if (sodium_init_once() != 0) return Status::error("libsodium: cannot initialise");
  std::unique_ptr<Server> s(new Server(options));
  s->started_at_ = now_s();
  Result<std::shared_ptr<lab::Database>> db = lab::Database::open(options.db);
  if (!db) return db.status();
  Result<std::unique_ptr<lab::RunStore>> store = lab::RunStore::open(db.value());
  if (!store) return store.status();
  s->store_ = std::move(store.value());
  Result<std::unique_ptr<AccountStore>> accounts = AccountStore::open(db.value());
  if (!accounts) return accounts.status();
  s->accounts_ = std::move(accounts.value());
  s->throttle_ = std::make_unique<SignInThrottle>(*s->accounts_);
  s->registration_ = options.registration;
  if (s->registration_.empty()) {
    const std::string& host = options.host;
    const bool loopback = host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
    s->registration_ = loopback ? "open" : "code";
  }
  if (s->registration_ != "open" && s->registration_ != "code" && s->registration_ != "closed")
    return Status::error("--registration: expected open, code or closed, got " + s->registration_);
  (void)s->accounts_->delete_expired_sessions(
      lab::wall_clock_s(), options.session_idle_s,
      options.session_absolute_s);
  const std::string models_dir = options.models_dir.empty() ? beside_source("models") : options.models_dir;
  // Uploads sit beside an SQLite store; beside the working folder when the store is PostgreSQL.
  const std::string uploads_dir =
      !options.uploads_dir.empty() ? options.uploads_dir
      : lab::Database::is_url(options.db) ? (fs::current_path() / "uploads").string()
                                          : (fs::absolute(options.db).parent_path() / "uploads").string();
  const Limits& limits = options.limits;
  Result<std::unique_ptr<ModelRegistry>> models = ModelRegistry::open(
      models_dir, uploads_dir, [limits](const ModelConfig& c) { return check_config_limits(c, limits); });
  if (!models) return models.status();
  s->models_ = std::move(models.value());
  for (const std::string& w : s->models_->warnings()) std::fprintf(stderr, "blocklab serve: %s\n", w.c_str());
  Result<std::unique_ptr<assistant::Assistant>> helper = assistant::Assistant::create(s->models_.get(), limits);
  if (!helper) return helper.status();
  s->assistant_ = std::move(helper).value();
  if (!options.assistant_model_url.empty()) {
    Result<std::unique_ptr<assistant::ModelClient>> m = assistant::ModelClient::create(
        {options.assistant_model_url, options.assistant_model_name, options.assistant_model_timeout_s});
    if (!m) return m.status();
    s->model_ = std::move(m).value();
  }
  set_blas_threads(1);  // parallelism comes from concurrent requests and jobs
  JobOptions jobs;
  jobs.run_jobs = options.run_jobs;
  jobs.max_running = options.limits.max_running_jobs;
  jobs.kind = "serve";
  jobs.checkpoint_dir = options.checkpoint_dir;
  s->jobs_ = std::make_unique<JobManager>(*s->store_, options.limits, jobs);
  for (const std::string& w : s->jobs_->recover()) std::fprintf(stderr, "blocklab serve: %s\n", w.c_str());
  const Limits& L = options.limits;
  http::Options h;
  h.host = options.host;
  h.port = options.port;
  h.threads = options.threads;
  // The engine's thread count is per thread (OpenMP's), so set_blas_threads(1) at start reached only this
  // one: each handler thread asks for it too (a 24-layer gradient flow took 38 ms on two threads, 31 on one).
  h.on_thread_start = [] { set_blas_threads(1); };
  h.max_connections = L.max_connections;
  h.max_connections_per_address = L.max_connections_per_address;
  h.max_streams = L.max_event_streams;
  h.header_timeout_s = L.header_timeout_s;
  h.body_timeout_s = L.body_timeout_s;
  h.idle_timeout_s = L.idle_timeout_s;
  h.max_header_bytes = L.max_header_bytes;
  h.max_header_fields = L.max_header_fields;
  h.max_body_bytes = L.max_body_bytes;
  h.max_inflight_body_bytes = L.max_inflight_body_bytes;
  h.allowed_hosts = options.allowed_hosts;
  h.cors_origin = options.cors_origin;
  const std::string web = options.web_dir.empty() ? beside_source("web/dist") : options.web_dir;
  if (fs::is_directory(web)) h.static_dir = web;
  if (options.access_log)
    h.log = [](const http::Request& req, int status, size_t bytes, double ms) {
      const json line = {{"ts", std::time(nullptr)}, {"method", req.method}, {"path", req.path},
                         {"status", status},         {"ms", std::round(ms * 100) / 100}, {"bytes", bytes},
                         {"remote", req.remote_addr}};
      // The path is the client's bytes, not necessarily UTF-8: replaced, never thrown over.
      std::fprintf(stderr, "%s\n", line.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    };
  s->http_ = std::make_unique<http::Server>(std::move(h));
  s->jobs_->set_on_event([srv = s->http_.get()] { srv->wake(); });
  s->web_dir_ = web;
  s->routes();
  return s;
}

Server::Server(const ServerOptions& options) : options_(options) {}
Server::~Server() {
  stop();
  if (jobs_) jobs_->set_on_event(nullptr);
}

Result<int> Server::bind() { return http_->bind(); }

void Server::serve() {
  if (!stopped_) http_->run();
}

void Server::stop() {
  stopped_ = true;
  // Streamed model replies see stopped_ at their next piece, or time out.
  for (int i = 0; model_threads_.load() > 0 && i < int(options_.assistant_model_timeout_s * 100) + 200; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (http_) http_->stop();
  if (jobs_) jobs_->shutdown();
}

void Server::routes() {
  http::Server& h = *http_;
  const Limits L = options_.limits;
  http::RouteOptions json_body;
  json_body.max_body = L.max_body_bytes;
  json_body.content_types = {"application/json"};
  auto get = [&h](const std::string& path, Handler fn) { h.route("GET", path, guarded(std::move(fn))); };
  auto post = [&h, json_body](const std::string& path, Handler fn) { h.route("POST", path, guarded(std::move(fn)), json_body); };
  auto del = [&h](const std::string& path, Handler fn) { h.route("DELETE", path, guarded(std::move(fn))); };

  // ---- Service ------------------------------------------------------------------------------------
  get("/api/health", [this](const http::Request&, http::Response& res) {
    const http::Server::Stats st = http_->stats();
    const std::shared_ptr<lab::Database>& db = store_->database();
    send_json(res, 200, {{"status", "ok"},
                         {"uptime_s", now_s() - started_at_},
                         {"store", {{"backend", db->dialect() == lab::Dialect::postgres ? "postgresql" : "sqlite"},
                                    {"answers", db->query("SELECT 1").is_ok()}}},
                         {"jobs", {{"running", jobs_->running()}, {"queued", jobs_->queued()}}},
                         {"workers", live_workers(*store_)},
                         {"models", models_->list().size()},
                         {"connections", {{"open", st.connections},
                                          {"event_streams", st.streams},
                                          {"busy_handlers", st.busy_handlers},
                                          {"queued_requests", st.queued_requests}}}});
  });
  get("/api/version", [this](const http::Request&, http::Response& res) {
    const Limits& l = options_.limits;
    send_json(res, 200, {{"version", BLOCKLAB_VERSION},
                         {"api", "1"},
                         {"run_store_schema", store_->schema_version()},
                         {"registration", registration_},
                         {"limits", {{"max_body_bytes", l.max_body_bytes},
                                     {"max_d_model", l.max_d_model},
                                     {"max_d_ff", l.max_d_ff},
                                     {"max_tokens", l.max_tokens},
                                     {"max_layers", l.max_layers},
                                     {"max_batch", l.max_batch},
                                     {"max_steps", l.max_steps},
                                     {"max_request_gflop", l.max_request_gflop},
                                     {"max_job_gflop", l.max_job_gflop},
                                     {"max_running_jobs", l.max_running_jobs},
                                     {"max_queued_jobs", l.max_queued_jobs},
                                     {"max_jobs_per_account", l.max_jobs_per_account},
                                     {"max_jobs_anonymous", l.max_jobs_anonymous},
                                     {"max_upload_bytes", l.max_upload_bytes},
                                     {"max_uploads", l.max_uploads},
                                     {"max_upload_total_bytes", l.max_upload_total_bytes},
                                     {"max_uploads_per_account", l.max_uploads_per_account},
                                     {"max_uploads_anonymous", l.max_uploads_anonymous},
                                     {"max_connections", l.max_connections},
                                     {"max_inflight_body_bytes", l.max_inflight_body_bytes},
                                     {"max_connections_per_address", l.max_connections_per_address},
                                     {"max_event_streams", l.max_event_streams},
                                     {"max_header_bytes", l.max_header_bytes},
                                     {"max_header_fields", l.max_header_fields},
                                     {"header_timeout_s", l.header_timeout_s},
                                     {"body_timeout_s", l.body_timeout_s},
                                     {"idle_timeout_s", l.idle_timeout_s}}}});
  });

  // ---- Compute ------------------------------------------------------------------------------------
  auto compute = [&](const char* path, std::function<json(const json&)> fn) {
    post(path, [fn, L](const http::Request& req, http::Response& res) { send_json(res, 200, fn(body_json(req, L))); });
  };
  compute("/api/compute/residual", [this, L](const json& j) { return compute_residual(j, *models_, L); });
  compute("/api/compute/layernorm", [L](const json& j) { return compute_layernorm(j, L); });
  compute("/api/compute/rmsnorm", [L](const json& j) { return compute_rmsnorm(j, L); });
  compute("/api/compute/batchnorm", [L](const json& j) { return compute_batchnorm(j, L); });
  compute("/api/compute/ffn", [this, L](const json& j) { return compute_ffn(j, *models_, L); });
  compute("/api/compute/block", [this, L](const json& j) { return compute_block(j, *models_, L); });
  compute("/api/gradient-flow", [L](const json& j) { return compute_gradient_flow(j, L); });

  // ---- Models -------------------------------------------------------------------------------------
  get("/api/models", [this](const http::Request&, http::Response& res) {
    json list = json::array();
    for (const ModelInfo& m : models_->list()) list.push_back(model_info_json(m));
    send_json(res, 200, {{"models", list}});
  });
  ModelRegistry::UploadQuota quota;
  quota.max_count = L.max_uploads;
  quota.max_bytes = L.max_upload_total_bytes;
  http::RouteOptions upload;
  upload.max_body = L.max_upload_bytes;
  upload.content_types = {"application/octet-stream"};
  upload.body_dir = models_->upload_dir();
  upload.before_body = [this, quota](const http::Request& head) -> std::optional<http::Refusal> {
    if (models_->upload_fits(head.content_length, quota)) return std::nullopt;
    return http::Refusal{507, "upload_quota",
                         "uploads: the server keeps at most " + std::to_string(quota.max_count) + " uploaded models and " +
                             std::to_string(quota.max_bytes >> 20) +
                             " MiB in all: expected one to be deleted first (DELETE /api/models/{id})"};
  };
  h.route("POST", "/api/models", guarded([this, quota](const http::Request& req, http::Response& res) {
            const std::optional<Session> who = session_for_change(req);
            if (req.body_file.empty())
              throw ApiError(400, "bad_request", "request body: expected a .safetensors model file, got nothing");
            ModelRegistry::UploadQuota mine = quota;
            mine.owner = who ? "user:" + who->user.name : "address:" + client_address(req);
            mine.max_per_owner = who ? options_.limits.max_uploads_per_account : options_.limits.max_uploads_anonymous;
            bool over_quota = false;
            Result<ModelRegistry::Upload> up = models_->add_upload_file(req.body_file, mine, &over_quota);
            if (!up) {
              if (over_quota) throw ApiError(507, "upload_quota", up.status().message());
              throw ApiError(400, "bad_model", up.status().message(), "body");
            }
            json info = model_info_json(up->info);
            if (up->created) info["delete_token"] = up->delete_token;
            send_json(res, up->created ? 201 : 200, info);
          }),
          upload);
  get(R"(/api/models/([A-Za-z0-9_.\-]+))", [this](const http::Request& req, http::Response& res) {
    auto m = models_->get(req.matches.at(1));
    if (!m) throw ApiError(404, "unknown_model", "model '" + req.matches.at(1) + "': no such model", "id");
    send_json(res, 200, model_info_json(m->info));
  });
  del(R"(/api/models/([A-Za-z0-9_.\-]+))", [this](const http::Request& req, http::Response& res) {
    (void)session_for_change(req);
    const std::string id = req.matches.at(1);
    const std::string* token = req.header("x-delete-token");
    switch (models_->remove_upload(id, token ? *token : std::string())) {
      case ModelRegistry::DeleteResult::unknown:
        throw ApiError(404, "unknown_model", "model '" + id + "': no such model", "id");
      case ModelRegistry::DeleteResult::forbidden:
        throw ApiError(403, "forbidden",
                       "model '" + id + "': only an upload can be deleted, with the X-Delete-Token its upload answered",
                       "X-Delete-Token");
      case ModelRegistry::DeleteResult::deleted:
        res.status = 204;
        return;
    }
  });
  get(R"(/api/models/([A-Za-z0-9_.\-]+)/download)", [this](const http::Request& req, http::Response& res) {
    auto m = models_->get(req.matches.at(1));
    if (!m) throw ApiError(404, "unknown_model", "model '" + req.matches.at(1) + "': no such model", "id");
    res.set_header("Content-Disposition", "attachment; filename=\"" + m->info.id + ".safetensors\"");
    res.content_type = "application/octet-stream";
    res.body = file_bytes(m->info.path);
  });

  // ---- Runs ---------------------------------------------------------------------------------------
  post("/api/runs", [this, L](const http::Request& req, http::Response& res) {
    const std::optional<Session> who = session_for_change(req);
    lab::TrainRunSpec spec = read_run_request(body_json(req, L), L);
    if (who) spec.user_id = who->user.id;  // the run is in the account's history
    const int64_t id = who ? jobs_->submit(std::move(spec), "user:" + who->user.name, L.max_jobs_per_account)
                           : jobs_->submit(std::move(spec), "address:" + client_address(req), L.max_jobs_anonymous);
    send_json(res, 202, {{"run_id", id}, {"status", "queued"}, {"events", "/api/runs/" + std::to_string(id) + "/events"}});
  });
  get("/api/runs", [this](const http::Request& req, http::Response& res) {
    // ?mine=1: the signed-in account's runs only (extension).
    const bool mine = req.has_param("mine") && req.param("mine") != "0" && req.param("mine") != "false";
    std::optional<Session> who;
    if (mine) {
      who = session(req);
      if (!who) throw ApiError(401, "unauthenticated", "mine: sign in to list your runs (POST /api/auth/login)", "mine");
    }
    Result<std::vector<lab::RunRecord>> runs = who ? store_->list_runs_of(who->user.id) : store_->list_runs();
    Result<std::vector<lab::RunRecord>> queue = store_->queue();
    Result<int64_t> running = store_->count_jobs("running");
    if (!runs || !queue || !running)
      throw ApiError(503, "store_unavailable", (!runs ? runs.status() : !queue ? queue.status() : running.status()).message());
    std::map<int64_t, int64_t> position;  // queued jobs: their place in the fair order, from 1
    for (size_t i = 0; i < queue->size(); ++i) position[queue.value()[i].id] = int64_t(i) + 1;
    json list = json::array();
    for (lab::RunRecord& r : runs.value()) {
      overlay_job(r, *jobs_);
      json j = lab::to_json(r);
      if (auto it = position.find(r.id); it != position.end() && r.status == "queued") j["queue_position"] = it->second;
      list.push_back(std::move(j));
    }
    send_json(res, 200, {{"runs", list},
                         {"queue", {{"queued", queue->size()}, {"running", running.value()},
                                    {"workers", live_workers(*store_).size()}}}});
  });
  auto get_run = [this](int64_t id) {
    Result<lab::RunRecord> r = store_->get_run(id);
    if (!r) throw ApiError(404, "unknown_run", "run " + std::to_string(id) + ": no such run", "id");
    lab::RunRecord run = r.value();
    overlay_job(run, *jobs_);
    return run;
  };
  auto run_json = [this](const lab::RunRecord& r) {
    json j = lab::to_json(r);
    Result<std::vector<lab::StepRecord>> steps = store_->steps(r.id);
    auto layers = store_->layer_grad_norms(r.id);
    if (!steps || !layers) throw ApiError(503, "store_unavailable", (!steps ? steps.status() : layers.status()).message());
    j["history"] = lab::to_json(steps.value());
    j["layer_grad_norms"] = lab::to_json(layers.value());
    return j;
  };
  get(R"(/api/runs/([^/]+))", [get_run, run_json](const http::Request& req, http::Response& res) {
    send_json(res, 200, run_json(get_run(path_id(req))));
  });
  del(R"(/api/runs/([^/]+))", [this, get_run](const http::Request& req, http::Response& res) {
    const std::optional<Session> who = session_for_change(req);
    const int64_t id = path_id(req);
    const lab::RunRecord r = get_run(id);
    // A job is cancelled by whoever submitted it (its account, or its address without a session) or by a
    // teacher; a run of the CLI's belongs to no one and has nothing to cancel.
    const std::string requester = who ? "user:" + who->user.name : "address:" + client_address(req);
    if (!r.owner.empty() && r.owner != requester && !(who && who->user.role == "teacher"))
      throw ApiError(403, "forbidden", "run " + std::to_string(id) + ": expected a job of yours (or a teacher) to cancel");
    const std::string outcome = jobs_->cancel(id);
    if (outcome == "cancelling") {
      send_json(res, 202, {{"run_id", id}, {"status", "cancelling"}});
    } else if (outcome == "cancelled") {
      send_json(res, 200, {{"run_id", id}, {"status", "cancelled"}});
    } else {
      send_json(res, 200, {{"run_id", id}, {"status", r.status}, {"message", "neither queued nor running: nothing to cancel"}});
    }
  });
  get(R"(/api/runs/([^/]+)/export)", [this, get_run, run_json](const http::Request& req, http::Response& res) {
    const lab::RunRecord r = get_run(path_id(req));
    const std::string format = req.has_param("format") ? req.param("format") : "csv";
    if (format == "csv") {
      Result<std::vector<lab::StepRecord>> steps = store_->steps(r.id);
      if (!steps) throw ApiError(503, "store_unavailable", steps.status().message());
      res.set_header("Content-Disposition", "attachment; filename=\"run-" + std::to_string(r.id) + ".csv\"");
      res.content_type = "text/csv";
      res.body = lab::to_csv(steps.value());
    } else if (format == "json") {
      res.set_header("Content-Disposition", "attachment; filename=\"run-" + std::to_string(r.id) + ".json\"");
      send_json(res, 200, run_json(r));
    } else {
      throw ApiError(400, "bad_request", "format: expected csv or json, got \"" + format.substr(0, 40) + "\"", "format");
    }
  });
  get(R"(/api/runs/([^/]+)/model)", [get_run](const http::Request& req, http::Response& res) {
    const lab::RunRecord r = get_run(path_id(req));
    if (r.checkpoint_path.empty() || !fs::exists(r.checkpoint_path))
      throw ApiError(404, "no_checkpoint", "run " + std::to_string(r.id) + ": has no checkpoint yet", "id");
    res.set_header("Content-Disposition", "attachment; filename=\"run-" + std::to_string(r.id) + ".safetensors\"");
    res.content_type = "application/octet-stream";
    res.body = file_bytes(r.checkpoint_path);
  });
  // An event stream holds no handler thread: the handler returns at once, and the I/O thread asks the
  // job for new events whenever one is published (and every quarter second).
  get(R"(/api/runs/([^/]+)/events)", [this, get_run](const http::Request& req, http::Response& res) {
    const lab::RunRecord r = get_run(path_id(req));
    res.set_header("Cache-Control", "no-cache");
    res.content_type = "text/event-stream";
    std::shared_ptr<RunFeed> feed = jobs_->feed(r.id);
    if (!feed) throw ApiError(503, "store_unavailable", "run " + std::to_string(r.id) + ": cannot read its events");
    bool ended = false;
    // A run that has ended without events (the CLI's, or from a blocklab before the queue was in the
    // store): its steps and end, as the store has them.
    if (feed->events_since(0, &ended).empty() && r.status != "queued" && r.status != "running") {
      std::string text;
      Result<std::vector<lab::StepRecord>> steps = store_->steps(r.id);
      if (!steps) throw ApiError(503, "store_unavailable", steps.status().message());
      for (const lab::StepRecord& s : steps.value())
        text += "event: step\ndata: " +
                json{{"step", s.step}, {"steps", r.steps_total}, {"loss", s.loss}, {"accuracy", s.accuracy},
                     {"lr", s.lr}, {"grad_norm", s.grad_norm}}.dump() + "\n\n";
      text += "event: end\ndata: " + json{{"status", r.status}, {"run_id", r.id}, {"steps", r.steps_done},
                                           {"final", lab::to_json(r)["final"]}}.dump() + "\n\n";
      res.body = text;
      return;
    }
    struct Cursor {
      size_t sent = 0;
      double last = now_s();
    };
    auto cursor = std::make_shared<Cursor>();
    res.stream = [feed, cursor](std::string& out) {
      bool done = false;
      const std::vector<std::string> events = feed->events_since(cursor->sent, &done);
      for (const std::string& e : events) out += e;
      cursor->sent += events.size();
      const double t = now_s();
      if (!events.empty()) {
        cursor->last = t;
      } else if (t - cursor->last > 15) {
        out += ": keep-alive\n\n";
        cursor->last = t;
      }
      return !(done && events.empty());
    };
  });

  account_routes();
  assistant_routes();

  if (web_dir_.empty() || !fs::is_directory(web_dir_)) {
    const std::string web = web_dir_;
    get("/", [web](const http::Request&, http::Response& res) {
      res.content_type = "text/html; charset=utf-8";
      res.body = "<!doctype html><meta charset=utf-8><title>BlockLab</title><h1>BlockLab API</h1>"
                 "<p>The web app is not built (expected it in " + web + "). The API is under /api/: see docs/api.md.";
    });
  }
}

}  // namespace blocklab::server
