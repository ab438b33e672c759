// The HTTP/1.1 server under `blocklab serve`: one epoll thread owns every socket (accepting, reading
// request heads and bodies against deadlines and size caps, writing answers and event streams) and a
// fixed pool of handler threads runs the routes. A connection holds no thread while it is idle, slow
// or watching an event stream, so a slow or hostile client costs a socket and a few kB, never a
// thread: the answer to clients that send a header byte a second (docs/api.md, "Connections").
//
// What the layer refuses before any handler runs, each with the contract's JSON error:
//   400 malformed request line or headers        408 head or body not received in time
//   411 a body without Content-Length             413 a body over the route's limit
//   415 a body whose Content-Type the route does not take
//   421 a Host header that is not one of the server's own names (DNS rebinding)
//   403 a state-changing request from a foreign Origin    405 a known path with another method (Allow)
//   431 too many or too large header fields       503 too many connections (in all, or from one address)
// Static files (the web app) are served from a folder for GET/HEAD paths outside /api/.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "engine/status.h"

namespace blocklab::server::http {

struct Request {
  std::string method;
  std::string target;  // as sent: path and query, percent-encoded
  std::string path;    // percent-decoded bytes (not necessarily UTF-8)
  std::multimap<std::string, std::string> query;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;       // the body, unless the route streams it to a file
  std::string body_file;  // the route's body as a file (uploads): the handler may rename it away
  int64_t content_length = 0;
  std::string remote_addr;
  std::vector<std::string> matches;  // the route pattern's groups; [0] is the whole path

  // The first header of that (lower-case) name, or null.
  const std::string* header(const std::string& name) const;
  bool has_param(const std::string& name) const { return query.count(name) > 0; }
  std::string param(const std::string& name) const;
};

// What a handler produces once; for an event stream, `stream` is then asked, on the I/O thread and
// without blocking, for whatever new bytes there are: it appends them to `out` and returns false when
// the stream has ended. It must never wait.
struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::function<bool(std::string& out)> stream;
  void set_header(const std::string& name, const std::string& value) { headers.emplace_back(name, value); }
};

using Handler = std::function<void(const Request&, Response&)>;
// Runs on the I/O thread once a route's head is in, before its body is read: throw to refuse the body
// (for example a quota). Returns nothing; an ApiError-like refusal is given as (status, code, message).
struct Refusal {
  int status;
  std::string code, message;
};
using BodyCheck = std::function<std::optional<Refusal>(const Request& head)>;

struct RouteOptions {
  int64_t max_body = -1;                    // -1: Options::max_body_bytes
  std::vector<std::string> content_types;   // a body needs one of these (media type, parameters ignored)
  std::string body_dir;                     // non-empty: the body is written to a new file there
  BodyCheck before_body;                    // may refuse from the head alone
};

struct Options {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port
  int threads = 8;  // handler threads
  std::function<void()> on_thread_start;  // run first on each handler thread (the server: one engine thread each)
  int max_connections = 1024;
  int max_connections_per_address = 128;
  int max_streams = 512;            // open event streams, in all
  double header_timeout_s = 10;     // a request's head, from its first byte
  double body_timeout_s = 60;       // a request's body, from the end of its head
  double idle_timeout_s = 30;       // a kept-alive connection with no request
  double write_timeout_s = 30;      // no byte of an answer accepted by the client for this long
  int64_t max_header_bytes = 16 << 10;  // request line and header fields together
  int max_header_fields = 100;
  int64_t max_body_bytes = 8 << 20;
  int64_t max_inflight_body_bytes = int64_t(256) << 20;  // in-memory bodies of all requests at once: then 503
  int64_t max_stream_backlog = 4 << 20;  // bytes of an event stream the client has not read: then closed
  std::vector<std::string> allowed_hosts;  // Host names besides localhost, IP literals and this machine's name
  std::string cors_origin;                 // "": same origin only
  std::string static_dir;                  // "": no static files
  // One line per answer (the access log), called on the I/O thread; null: none.
  std::function<void(const Request&, int status, size_t bytes, double ms)> log;
};

class Server {
 public:
  explicit Server(Options options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // A route: an exact method and a path regex (anchored, matched on the decoded path).
  void route(const std::string& method, const std::string& pattern, Handler handler, RouteOptions options = {});

  Result<int> bind();  // the port (useful with port 0)
  void run();          // until stop(); REQUIRES: bind() succeeded
  void stop();         // from any thread; run() returns soon after
  // Wakes the I/O thread to poll the event streams now (a job published an event).
  void wake();

  struct Stats {
    int connections = 0, streams = 0, busy_handlers = 0, queued_requests = 0;
  };
  Stats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Parses a request head (request line and header fields, without the blank line that ends it) into
// `out` (method, target, path, query, headers), and whether the connection may stay open. A refusal
// (400 or 431) says why.
std::optional<Refusal> parse_request_head(std::string_view head, int max_fields, Request* out, bool* keep_alive);

// Percent-decoding; '+' stays '+' in paths and is a space in query strings.
std::string percent_decode(std::string_view s, bool plus_is_space);

}  // namespace blocklab::server::http
