// `blocklab serve`: the HTTP API (docs/api.md, docs/openapi.json) and the built web app, from one
// origin. Handlers parse, call compute.h / the run store / the job manager, and serialise; every bad
// request is a JSON error with a 4xx naming the field.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "lab/run_store.h"
#include "server/api_input.h"
#include "server/jobs.h"
#include "server/model_registry.h"

namespace blocklab::server::http {
class Server;
}

namespace blocklab::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (tests)
  std::string db = "blocklab.db";
  std::string models_dir;   // built-in models; "" : models/ beside the source tree
  std::string uploads_dir;  // ""  : uploads/ beside the store
  std::string web_dir;      // the built web app; "" : web/dist beside the source tree
  std::string cors_origin;  // "" : no CORS headers (the default)
  std::vector<std::string> allowed_hosts;  // Host names besides localhost, IP literals and the machine's name
  bool access_log = true;   // one JSON line per request on stderr
  int threads = 8;          // handler threads (connections hold none: server/http.h)
  Limits limits;
};

class Server {
 public:
  static Result<std::unique_ptr<Server>> create(const ServerOptions& options);
  ~Server();

  // Binds; returns the port (useful with port 0).
  Result<int> bind();
  // Serves until stop(). REQUIRES: bind() succeeded.
  void serve();
  // Stops accepting, cancels the training jobs (they checkpoint), returns when all is shut.
  void stop();

  ModelRegistry& models() { return *models_; }

 private:
  explicit Server(const ServerOptions& options);
  void routes();

  ServerOptions options_;
  std::unique_ptr<lab::RunStore> store_;
  std::unique_ptr<ModelRegistry> models_;
  std::unique_ptr<JobManager> jobs_;
  std::unique_ptr<http::Server> http_;
  std::string web_dir_;
  double started_at_ = 0;
  std::atomic<bool> stopped_{false};
};

}  // namespace blocklab::server
