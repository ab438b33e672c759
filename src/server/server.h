// `blocklab serve`: the HTTP API (docs/api.md, docs/openapi.json) and the built web app, from one
// origin. Handlers parse, call compute.h / the run store / the job manager, and serialise; every bad
// request is a JSON error with a 4xx naming the field.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "assistant/assistant.h"
#include "assistant/model_client.h"
#include "lab/run_store.h"
#include "server/account_store.h"
#include "server/auth.h"
#include "server/api_input.h"
#include "server/jobs.h"
#include "server/model_registry.h"

namespace blocklab::server::http {
class Server;
struct Request;
}

namespace blocklab::server {

// <repository>/<rel>, found from the executable (build/blocklab), else from the working folder.
std::string beside_source(const std::string& rel);

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
  // Who may register (docs/accounts.md): open | code (with a teacher's class code) | closed.
  // "": open when listening on loopback, code otherwise.
  std::string registration;
  bool behind_tls = false;    // the session cookie is Secure
  std::string trusted_proxy;  // its address: X-Forwarded-For and X-Forwarded-Proto from it are believed
  double session_idle_s = 24 * 3600.0;       // a session not used for this long ends
  double session_absolute_s = 14 * 86400.0;  // and none lasts longer
  int max_comment_chars = 4000;
  int comments_per_minute = 6;  // per account
  int comments_page = 100;      // most comments in one answer
  // The learning assistant (docs/assistant.md): questions a minute per account (or address without one),
  // messages kept per account, and the optional chat model that rewords its answers.
  int assistant_per_minute = 20;
  int assistant_history = 200;
  std::string assistant_model_url;   // "" : none (the offline answers only)
  std::string assistant_model_name;
  double assistant_model_timeout_s = 20;
  bool run_jobs = true;         // false (--no-jobs): queue and stream jobs, leave the training to workers
  std::string checkpoint_dir;   // the jobs' checkpoints; "" : checkpoints/ beside an SQLite store, ./checkpoints for PostgreSQL
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
  // Stops accepting; the jobs it trains checkpoint and go back to the queue; returns when all is shut.
  void stop();

  ModelRegistry& models() { return *models_; }
  const std::string& registration() const { return registration_; }

 private:
  explicit Server(const ServerOptions& options);
  void routes();
  void account_routes();    // server_accounts.cpp: /api/auth, /api/comments, /api/users
  void assistant_routes();  // server_assistant.cpp: /api/assistant

  struct Session {
    User user;
    std::string token;
  };
  // The request's session (its cookie names a live one), or none.
  std::optional<Session> session(const http::Request& req);
  // For a request that changes state: its session, after the CSRF check (403 csrf); none when it
  // carries no session cookie.
  std::optional<Session> session_for_change(const http::Request& req);
  // The client's address: the peer's, or X-Forwarded-For's last hop when the peer is the trusted proxy.
  std::string client_address(const http::Request& req) const;
  bool secure_request(const http::Request& req) const;

  ServerOptions options_;
  std::unique_ptr<lab::RunStore> store_;
  std::unique_ptr<ModelRegistry> models_;
  std::unique_ptr<JobManager> jobs_;
  std::unique_ptr<AccountStore> accounts_;
  std::unique_ptr<SignInThrottle> throttle_;
  std::string registration_;
  std::unique_ptr<assistant::Assistant> assistant_;
  std::unique_ptr<assistant::ModelClient> model_;  // null: none
  std::atomic<int> model_threads_{0};              // streamed model replies being read
  struct AssistantLimits {                         // anonymous questions per address, in this process
    std::mutex mu;
    std::map<std::string, std::deque<double>> by_address;
  };
  AssistantLimits assistant_limits_storage_;
  AssistantLimits* assistant_limits_ = &assistant_limits_storage_;
  std::unique_ptr<http::Server> http_;
  std::string web_dir_;
  double started_at_ = 0;
  std::atomic<bool> stopped_{false};
};

}  // namespace blocklab::server
