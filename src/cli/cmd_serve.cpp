// blocklab serve [--host 127.0.0.1] [--port 8080] [--db blocklab.db] [...]
#include <signal.h>

#include <atomic>
#include <chrono>

#include <cstdio>
#include <memory>
#include <thread>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "server/server.h"

namespace blocklab::cli {

namespace {

struct ServeArgs {
  server::ServerOptions options;
  bool quiet = false;
};

int run_serve(ServeArgs a) {
  const std::string cmd = "serve";
  a.options.access_log = !a.quiet;
  if (a.options.port < 0 || a.options.port > 65535)
    return fail(cmd, "--port: expected 0..65535, got " + std::to_string(a.options.port));
  Result<std::unique_ptr<server::Server>> srv = server::Server::create(a.options);
  if (!srv) return fail(cmd, srv.status());
  Result<int> port = srv.value()->bind();
  if (!port) return fail(cmd, port.status());
  install_stop_signals();  // a watcher thread sees the flag and stops the server cleanly
  std::fprintf(stderr, "blocklab serve: http://%s:%d/ (store %s, %zu models); Ctrl-C stops\n", a.options.host.c_str(),
               port.value(), a.options.db.c_str(), srv.value()->models().list().size());
  std::fflush(stderr);
  server::Server* s = srv.value().get();
  std::atomic<bool> done{false};
  std::thread watcher([s, &done] {
    while (!done.load() && stop_signal() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (const int sig = stop_signal()) {
      std::fprintf(stderr, "blocklab serve: %s: stopping (training jobs checkpoint and go back to the queue)\n",
                   sig == SIGINT ? "SIGINT" : "SIGTERM");
      s->stop();
    }
  });
  s->serve();
  done = true;
  watcher.join();
  s->stop();
  std::fprintf(stderr, "blocklab serve: stopped\n");
  return 0;
}

}  // namespace

Runner add_serve_command(CLI::App& sub) {
  auto a = std::make_shared<ServeArgs>();
  sub.footer("The API is documented in docs/api.md (and docs/openapi.json); the web app is served at /.");
  sub.add_option("--host", a->options.host, "address to listen on (default 127.0.0.1)");
  sub.add_option("--port", a->options.port, "port (default 8080; 0: any free port)");
  add_db_flag(sub, a->options.db, "the store of runs, accounts, sessions and comments");
  sub.add_option("--models", a->options.models_dir, "built-in models folder (default models/ of the source tree)");
  sub.add_option("--uploads", a->options.uploads_dir, "uploaded models folder (default uploads/ beside the store)");
  sub.add_option("--web", a->options.web_dir, "the built web app (default web/dist of the source tree)");
  sub.add_option("--cors-origin", a->options.cors_origin, "allow this origin (default: no CORS headers)");
  sub.add_option("--allowed-host", a->options.allowed_hosts,
                 "a Host name clients may use besides localhost, IP addresses and this machine's name (repeatable)");
  sub.add_option("--registration", a->options.registration,
                 "who may register: open, code (a teacher's class code) or closed (default: open on loopback, else code)")
      ->check(CLI::IsMember({"open", "code", "closed"}));
  sub.add_flag("--behind-tls", a->options.behind_tls, "a TLS proxy is in front: the session cookie is Secure");
  sub.add_option("--trusted-proxy", a->options.trusted_proxy,
                 "the reverse proxy's address: its X-Forwarded-For and X-Forwarded-Proto are believed");
  sub.add_option("--threads", a->options.threads, "handler threads (default 8; connections hold none)")
      ->check(CLI::Range(1, 256));
  sub.add_option("--assistant-model", a->options.assistant_model_url,
                 "an OpenAI-compatible chat API (http://HOST:PORT/v1) that rewords the assistant's answers (default: none, answers from the lessons)");
  sub.add_option("--assistant-model-name", a->options.assistant_model_name, "the chat model's name, sent as \"model\" and shown as the answers' source");
  sub.add_option("--assistant-model-timeout", a->options.assistant_model_timeout_s,
                 "seconds for the chat model's whole reply, then the answer from the lessons (default 20)")
      ->check(CLI::Range(1.0, 600.0));
  sub.add_option("--assistant-per-minute", a->options.assistant_per_minute,
                 "assistant questions a minute per account, or per address without one (default 20)")
      ->check(CLI::Range(1, 100000));
  server::Limits& L = a->options.limits;
  sub.add_option("--max-conns", L.max_connections, "open connections in all (default 1024)")->check(CLI::Range(1, 100000));
  sub.add_option("--max-conns-per-addr", L.max_connections_per_address, "open connections from one address (default 128)")
      ->check(CLI::Range(1, 100000));
  sub.add_option("--max-streams", L.max_event_streams, "open event streams in all (default 512)")->check(CLI::Range(1, 100000));
  sub.add_option("--header-timeout", L.header_timeout_s, "seconds for a request's head to arrive (default 10)")
      ->check(CLI::Range(0.1, 3600.0));
  sub.add_option("--body-timeout", L.body_timeout_s, "seconds for a request's body to arrive (default 60)")
      ->check(CLI::Range(0.1, 3600.0));
  sub.add_option("--idle-timeout", L.idle_timeout_s, "seconds a kept-alive connection may wait (default 30)")
      ->check(CLI::Range(0.1, 3600.0));
  sub.add_option("--max-upload-bytes", L.max_upload_bytes, "bytes of one uploaded model (default 67108864)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40));
  sub.add_option("--max-uploads", L.max_uploads, "uploaded models kept (default 32)")->check(CLI::Range(0, 100000));
  sub.add_option("--max-upload-total", L.max_upload_total_bytes, "bytes of all uploaded models (default 536870912)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 50));
  sub.add_option("--max-jobs", a->options.limits.max_running_jobs, "training jobs this process trains at once (default 2)")
      ->check(CLI::Range(1, 64));
  sub.add_option("--max-queue", a->options.limits.max_queued_jobs, "training jobs waiting in the store's queue (of every process on it), then 429 (default 8)")
      ->check(CLI::Range(0, 1024));
  sub.add_option("--max-jobs-per-account", a->options.limits.max_jobs_per_account,
                 "training jobs queued or running per signed-in account (default 4)")
      ->check(CLI::Range(1, 1024));
  sub.add_option("--max-jobs-anonymous", a->options.limits.max_jobs_anonymous,
                 "training jobs queued or running per address without a session (default 2)")
      ->check(CLI::Range(1, 1024));
  sub.add_flag("--no-jobs", [a](int64_t) { a->options.run_jobs = false; },
               "train nothing here: queue and stream jobs, `blocklab worker`s on the same store train them");
  sub.add_option("--checkpoints", a->options.checkpoint_dir,
                 "the jobs' checkpoints, shared by every process on the store (default checkpoints/ beside an SQLite "
                 "store, ./checkpoints for PostgreSQL)");
  sub.add_flag("--quiet", a->quiet, "no access log");
  return [a] { return run_serve(*a); };
}

}  // namespace blocklab::cli
