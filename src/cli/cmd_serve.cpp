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

std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }

int run_serve(ServeArgs a) {
  const std::string cmd = "serve";
  a.options.access_log = !a.quiet;
  if (a.options.port < 0 || a.options.port > 65535)
    return fail(cmd, "--port: expected 0..65535, got " + std::to_string(a.options.port));
  Result<std::unique_ptr<server::Server>> srv = server::Server::create(a.options);
  if (!srv) return fail(cmd, srv.status());
  Result<int> port = srv.value()->bind();
  if (!port) return fail(cmd, port.status());
  // SIGINT / SIGTERM (delivered to whichever thread: the BLAS has its own) only raise a flag; a watcher
  // thread sees it and stops the server cleanly.
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  std::fprintf(stderr, "blocklab serve: http://%s:%d/ (store %s, %zu models); Ctrl-C stops\n", a.options.host.c_str(),
               port.value(), a.options.db.c_str(), srv.value()->models().list().size());
  std::fflush(stderr);
  server::Server* s = srv.value().get();
  std::atomic<bool> done{false};
  std::thread watcher([s, &done] {
    while (!done.load() && g_stop_signal.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (const int sig = g_stop_signal.load()) {
      std::fprintf(stderr, "blocklab serve: %s: stopping (training jobs checkpoint and stop)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
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
  sub.add_option("--db", a->options.db, "run store (default blocklab.db)");
  sub.add_option("--models", a->options.models_dir, "built-in models folder (default models/ of the source tree)");
  sub.add_option("--uploads", a->options.uploads_dir, "uploaded models folder (default uploads/ beside the store)");
  sub.add_option("--web", a->options.web_dir, "the built web app (default web/dist of the source tree)");
  sub.add_option("--cors-origin", a->options.cors_origin, "allow this origin (default: no CORS headers)");
  sub.add_option("--threads", a->options.threads, "request threads (default 8)")->check(CLI::Range(1, 256));
  sub.add_option("--max-jobs", a->options.limits.max_running_jobs, "training jobs run at once (default 2)")
      ->check(CLI::Range(1, 64));
  sub.add_option("--max-queue", a->options.limits.max_queued_jobs, "training jobs waiting, then 429 (default 8)")
      ->check(CLI::Range(0, 1024));
  sub.add_flag("--quiet", a->quiet, "no access log");
  return [a] { return run_serve(*a); };
}

}  // namespace blocklab::cli
