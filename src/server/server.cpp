#include "server/server.h"

#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "engine/blas.h"
#include "io/model_file.h"
#include "lab/gradflow.h"
#include "lab/run_json.h"
#include "lab/trainer.h"
#include "server/compute.h"

namespace blocklab::server {

namespace {

namespace fs = std::filesystem;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// <repository>/<rel>, found from the executable (build/blocklab), else from the working folder.
std::string beside_source(const std::string& rel) {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path p = exe.parent_path().parent_path() / rel;
    if (fs::exists(p)) return p.string();
  }
  return (fs::current_path() / rel).string();
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) { send_json(res, e.status, e.body()); }

using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;

// Every handler runs inside this: an ApiError becomes its 4xx; anything else is our bug, a 500.
Handler guarded(Handler h) {
  return [h = std::move(h)](const httplib::Request& req, httplib::Response& res) {
    try {
      h(req, res);
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const std::bad_alloc&) {
      send_error(res, ApiError(503, "out_of_memory", "the server ran out of memory for this request: expected a smaller one"));
    } catch (const std::exception& e) {
      send_error(res, ApiError(500, "internal", std::string("internal error: ") + e.what()));
    }
  };
}

int64_t path_id(const httplib::Request& req) {
  const std::string s = req.matches[1];
  try {
    size_t used = 0;
    const long long v = std::stoll(s, &used);
    if (used == s.size() && v > 0) return v;
  } catch (const std::exception&) {
  }
  throw ApiError(400, "bad_request", "id: expected a positive integer run id, got \"" + s + "\"", "id");
}

thread_local double t_request_start = 0;

}  // namespace

Result<std::unique_ptr<Server>> Server::create(const ServerOptions& options) {
  std::unique_ptr<Server> s(new Server(options));
  s->started_at_ = now_s();
  Result<std::unique_ptr<lab::RunStore>> store = lab::RunStore::open(options.db);
  if (!store) return store.status();
  s->store_ = std::move(store.value());
  const std::string models_dir = options.models_dir.empty() ? beside_source("models") : options.models_dir;
  const std::string uploads_dir =
      options.uploads_dir.empty() ? (fs::absolute(options.db).parent_path() / "uploads").string() : options.uploads_dir;
  Result<std::unique_ptr<ModelRegistry>> models = ModelRegistry::open(models_dir, uploads_dir);
  if (!models) return models.status();
  s->models_ = std::move(models.value());
  for (const std::string& w : s->models_->warnings()) std::fprintf(stderr, "blocklab serve: %s\n", w.c_str());
  set_blas_threads(1);  // parallelism comes from concurrent requests and jobs
  s->jobs_ = std::make_unique<JobManager>(*s->store_, options.limits);
  s->http_ = std::make_unique<httplib::Server>();
  s->routes();
  return s;
}

Server::Server(const ServerOptions& options) : options_(options) {}
Server::~Server() { stop(); }

Result<int> Server::bind() {
  const int port = options_.port == 0 ? http_->bind_to_any_port(options_.host) :
                   (http_->bind_to_port(options_.host, options_.port) ? options_.port : -1);
  if (port < 0)
    return Status::error(options_.host + ":" + std::to_string(options_.port) +
                         ": cannot listen (in use, or not an address of this machine)");
  return port;
}

void Server::serve() {
  serving_ = true;
  if (!stopped_) http_->listen_after_bind();
  served_ = true;
}

void Server::stop() {
  stopped_ = true;
  if (http_ && serving_ && !served_) {
    // httplib's stop() only stops a server already listening: wait for serve() to get there.
    for (int i = 0; i < 2000 && !http_->is_running() && !served_; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    http_->stop();
  }
  if (jobs_) jobs_->shutdown();
}

void Server::routes() {
  httplib::Server& h = *http_;
  const Limits L = options_.limits;
  const int threads = options_.threads;
  h.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  h.set_payload_max_length(size_t(std::max<int64_t>(L.max_body_bytes, 64 << 20)));  // uploads may be larger
  h.set_read_timeout(10, 0);
  h.set_write_timeout(10, 0);
  h.set_keep_alive_max_count(100);

  h.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    t_request_start = now_s();
    // Compression: httplib picks brotli at its highest quality when the client accepts it, which costs
    // more than a second for a few hundred kB. Static files get gzip; API answers go uncompressed
    // (they are computed per request and mostly served on loopback or a LAN, where latency wins).
    auto& headers = const_cast<httplib::Request&>(req).headers;
    auto enc = headers.find("Accept-Encoding");
    if (enc != headers.end())
      enc->second = req.path.rfind("/api/", 0) == 0 ? "identity"
                                                     : (enc->second.find("gzip") != std::string::npos ? "gzip" : "identity");
    if (req.path.rfind("/assets/", 0) == 0)  // Vite's content-hashed files never change
      res.set_header("Cache-Control", "public, max-age=31536000, immutable");
    if (!options_.cors_origin.empty()) {
      res.set_header("Access-Control-Allow-Origin", options_.cors_origin);
      res.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
      res.set_header("Access-Control-Allow-Headers", "Content-Type");
    }
    (void)req;
    return httplib::Server::HandlerResponse::Unhandled;
  });
  if (options_.access_log)
    h.set_logger([](const httplib::Request& req, const httplib::Response& res) {
      const json line = {{"ts", std::time(nullptr)},
                         {"method", req.method},
                         {"path", req.path},
                         {"status", res.status},
                         {"ms", std::round((now_s() - t_request_start) * 1e5) / 100},
                         {"bytes", res.body.size()},
                         {"remote", req.remote_addr}};
      std::fprintf(stderr, "%s\n", line.dump().c_str());
    });
  h.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler already wrote its error
    if (res.status == 413) {
      send_error(res, ApiError(413, "too_large", "request body: expected at most the documented size limit (docs/api.md)"));
    } else if (req.path.rfind("/api/", 0) == 0 || res.status != 404) {
      send_error(res, ApiError(res.status == 404 ? 404 : res.status, res.status == 404 ? "not_found" : "bad_request",
                               req.method + " " + req.path + ": no such endpoint (see docs/api.md)"));
    }
  });
  h.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, "internal", "internal error: " + what));
  });

  auto body_of = [L](const httplib::Request& req) {
    if (int64_t(req.body.size()) > L.max_body_bytes)
      throw ApiError(413, "too_large", "request body: expected at most " + std::to_string(L.max_body_bytes) + " bytes, got " +
                                           std::to_string(req.body.size()));
    return parse_body(req.body);
  };

  // ---- Service ------------------------------------------------------------------------------------
  h.Get("/api/health", guarded([this](const httplib::Request&, httplib::Response& res) {
          send_json(res, 200, {{"status", "ok"},
                               {"uptime_s", now_s() - started_at_},
                               {"jobs", {{"running", jobs_->running()}, {"queued", jobs_->queued()}}},
                               {"models", models_->list().size()}});
        }));
  h.Get("/api/version", guarded([this](const httplib::Request&, httplib::Response& res) {
          send_json(res, 200, {{"version", BLOCKLAB_VERSION},
                               {"api", "1"},
                               {"run_store_schema", store_->schema_version()},
                               {"limits", {{"max_body_bytes", options_.limits.max_body_bytes},
                                           {"max_d_model", options_.limits.max_d_model},
                                           {"max_d_ff", options_.limits.max_d_ff},
                                           {"max_tokens", options_.limits.max_tokens},
                                           {"max_layers", options_.limits.max_layers},
                                           {"max_batch", options_.limits.max_batch},
                                           {"max_steps", options_.limits.max_steps},
                                           {"max_request_gflop", options_.limits.max_request_gflop},
                                           {"max_job_gflop", options_.limits.max_job_gflop},
                                           {"max_running_jobs", options_.limits.max_running_jobs},
                                           {"max_queued_jobs", options_.limits.max_queued_jobs}}}});
        }));

  // ---- Compute ------------------------------------------------------------------------------------
  auto compute = [&](const char* path, std::function<json(const json&)> fn) {
    h.Post(path, guarded([fn, body_of](const httplib::Request& req, httplib::Response& res) {
             send_json(res, 200, fn(body_of(req)));
           }));
  };
  compute("/api/compute/residual", [this, L](const json& j) { return compute_residual(j, *models_, L); });
  compute("/api/compute/layernorm", [L](const json& j) { return compute_layernorm(j, L); });
  compute("/api/compute/rmsnorm", [L](const json& j) { return compute_rmsnorm(j, L); });
  compute("/api/compute/batchnorm", [L](const json& j) { return compute_batchnorm(j, L); });
  compute("/api/compute/ffn", [this, L](const json& j) { return compute_ffn(j, *models_, L); });
  compute("/api/compute/block", [this, L](const json& j) { return compute_block(j, *models_, L); });
  compute("/api/gradient-flow", [L](const json& j) { return compute_gradient_flow(j, L); });

  // ---- Models -------------------------------------------------------------------------------------
  h.Get("/api/models", guarded([this](const httplib::Request&, httplib::Response& res) {
          json list = json::array();
          for (const ModelInfo& m : models_->list()) list.push_back(model_info_json(m));
          send_json(res, 200, {{"models", list}});
        }));
  h.Post("/api/models", guarded([this](const httplib::Request& req, httplib::Response& res) {
           if (req.body.empty()) throw ApiError(400, "bad_request", "request body: expected a .safetensors model file, got nothing");
           Result<ModelInfo> info = models_->add_upload(req.body);
           if (!info) throw ApiError(400, "bad_model", info.status().message(), "body");
           send_json(res, 201, model_info_json(info.value()));
         }));
  h.Get(R"(/api/models/([A-Za-z0-9_.\-]+))", guarded([this](const httplib::Request& req, httplib::Response& res) {
          auto m = models_->get(req.matches[1]);
          if (!m) throw ApiError(404, "unknown_model", "model '" + std::string(req.matches[1]) + "': no such model", "id");
          send_json(res, 200, model_info_json(m->info));
        }));
  h.Get(R"(/api/models/([A-Za-z0-9_.\-]+)/download)", guarded([this](const httplib::Request& req, httplib::Response& res) {
          auto m = models_->get(req.matches[1]);
          if (!m) throw ApiError(404, "unknown_model", "model '" + std::string(req.matches[1]) + "': no such model", "id");
          std::ifstream in(m->info.path, std::ios::binary);
          std::stringstream ss;
          ss << in.rdbuf();
          res.set_header("Content-Disposition", "attachment; filename=\"" + m->info.id + ".safetensors\"");
          res.set_content(ss.str(), "application/octet-stream");
        }));

  // ---- Runs ---------------------------------------------------------------------------------------
  h.Post("/api/runs", guarded([this, body_of, L](const httplib::Request& req, httplib::Response& res) {
           lab::TrainRunSpec spec = read_run_request(body_of(req), L);
           const int64_t id = jobs_->submit(std::move(spec));
           send_json(res, 202, {{"run_id", id}, {"status", "queued"}, {"events", "/api/runs/" + std::to_string(id) + "/events"}});
         }));
  h.Get("/api/runs", guarded([this](const httplib::Request&, httplib::Response& res) {
          Result<std::vector<lab::RunRecord>> runs = store_->list_runs();
          if (!runs) throw ApiError(503, "store_unavailable", runs.status().message());
          json list = json::array();
          for (const lab::RunRecord& r : runs.value()) list.push_back(lab::to_json(r));
          send_json(res, 200, {{"runs", list}});
        }));
  auto get_run = [this](int64_t id) {
    Result<lab::RunRecord> r = store_->get_run(id);
    if (!r) throw ApiError(404, "unknown_run", "run " + std::to_string(id) + ": no such run", "id");
    return r.value();
  };
  h.Get(R"(/api/runs/([^/]+))", guarded([this, get_run](const httplib::Request& req, httplib::Response& res) {
          const lab::RunRecord r = get_run(path_id(req));
          json j = lab::to_json(r);
          j["history"] = lab::to_json(store_->steps(r.id).value());
          j["layer_grad_norms"] = lab::to_json(store_->layer_grad_norms(r.id).value());
          send_json(res, 200, j);
        }));
  h.Delete(R"(/api/runs/([^/]+))", guarded([this, get_run](const httplib::Request& req, httplib::Response& res) {
             const int64_t id = path_id(req);
             const lab::RunRecord r = get_run(id);
             if (jobs_->cancel(id)) {
               send_json(res, 202, {{"run_id", id}, {"status", "cancelling"}});
             } else {
               send_json(res, 200, {{"run_id", id}, {"status", r.status}, {"message", "not running on this server: nothing to cancel"}});
             }
           }));
  h.Get(R"(/api/runs/([^/]+)/export)", guarded([this, get_run](const httplib::Request& req, httplib::Response& res) {
          const lab::RunRecord r = get_run(path_id(req));
          const std::string format = req.has_param("format") ? req.get_param_value("format") : "csv";
          if (format == "csv") {
            res.set_header("Content-Disposition", "attachment; filename=\"run-" + std::to_string(r.id) + ".csv\"");
            res.set_content(lab::to_csv(store_->steps(r.id).value()), "text/csv");
          } else if (format == "json") {
            json j = lab::to_json(r);
            j["history"] = lab::to_json(store_->steps(r.id).value());
            j["layer_grad_norms"] = lab::to_json(store_->layer_grad_norms(r.id).value());
            res.set_header("Content-Disposition", "attachment; filename=\"run-" + std::to_string(r.id) + ".json\"");
            send_json(res, 200, j);
          } else {
            throw ApiError(400, "bad_request", "format: expected csv or json, got \"" + format + "\"", "format");
          }
        }));
  h.Get(R"(/api/runs/([^/]+)/model)", guarded([this, get_run](const httplib::Request& req, httplib::Response& res) {
          const lab::RunRecord r = get_run(path_id(req));
          if (r.checkpoint_path.empty() || !fs::exists(r.checkpoint_path))
            throw ApiError(404, "no_checkpoint", "run " + std::to_string(r.id) + ": has no checkpoint yet", "id");
          std::ifstream in(r.checkpoint_path, std::ios::binary);
          std::stringstream ss;
          ss << in.rdbuf();
          res.set_header("Content-Disposition", "attachment; filename=\"run-" + std::to_string(r.id) + ".safetensors\"");
          res.set_content(ss.str(), "application/octet-stream");
        }));
  h.Get(R"(/api/runs/([^/]+)/events)", guarded([this, get_run](const httplib::Request& req, httplib::Response& res) {
          const lab::RunRecord r = get_run(path_id(req));
          res.set_header("Cache-Control", "no-cache");
          std::shared_ptr<Job> job = jobs_->find(r.id);
          if (!job) {  // not a job of this server: replay what the store has, then end
            std::string text;
            for (const lab::StepRecord& s : store_->steps(r.id).value())
              text += "event: step\ndata: " +
                      json{{"step", s.step}, {"steps", r.steps_total}, {"loss", s.loss}, {"accuracy", s.accuracy},
                           {"lr", s.lr}, {"grad_norm", s.grad_norm}}.dump() + "\n\n";
            text += "event: end\ndata: " + json{{"status", r.status}, {"run_id", r.id}, {"steps", r.steps_done},
                                                 {"final", lab::to_json(r)["final"]}}.dump() + "\n\n";
            res.set_content(text, "text/event-stream");
            return;
          }
          auto sent = std::make_shared<size_t>(0);
          res.set_chunked_content_provider("text/event-stream", [job, sent](size_t, httplib::DataSink& sink) {
            bool done = false;
            const std::vector<std::string> events = job->events_since(*sent, 15000, &done);
            if (events.empty() && !done) return sink.write(": keep-alive\n\n", 14);
            for (const std::string& e : events)
              if (!sink.write(e.data(), e.size())) return false;
            *sent += events.size();
            if (done && events.empty()) sink.done();
            return true;
          });
        }));

  // ---- The web app --------------------------------------------------------------------------------
  const std::string web = options_.web_dir.empty() ? beside_source("web/dist") : options_.web_dir;
  if (fs::is_directory(web)) {
    h.set_mount_point("/", web);
  } else {
    h.Get("/", [web](const httplib::Request&, httplib::Response& res) {
      res.set_content("<!doctype html><meta charset=utf-8><title>BlockLab</title><h1>BlockLab API</h1>"
                      "<p>The web app is not built (expected it in " + web + "). The API is under /api/: see docs/api.md.",
                      "text/html");
    });
  }
}

}  // namespace blocklab::server
