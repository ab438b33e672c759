#include "server/http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "server/api_input.h"
#include "server/auth.h"

namespace blocklab::server::http {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return std::string(s.substr(b, e - b));
}

const char* reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 507: return "Insufficient Storage";
    default: return "Status";
  }
}

// The contract's error body, as every handler writes it (ApiError::body).
std::string error_json(int status, const std::string& code, const std::string& message) {
  return ApiError(status, code, message).body().dump(-1, ' ', false, json::error_handler_t::replace);
}

// The media type of a Content-Type value: "application/json; charset=utf-8" -> "application/json".
std::string media_type(const std::string& v) { return lower(trim(std::string_view(v).substr(0, v.find(';')))); }

bool is_ip_literal(const std::string& host) {
  in_addr a4;
  in6_addr a6;
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

// "example.org:8080" -> "example.org"; "[::1]:8080" -> "::1".
std::string host_name(const std::string& authority) {
  if (!authority.empty() && authority[0] == '[') {
    const size_t e = authority.find(']');
    return e == std::string::npos ? authority : authority.substr(1, e - 1);
  }
  const size_t c = authority.rfind(':');
  return lower(c == std::string::npos ? authority : authority.substr(0, c));
}

std::string mime_of(const std::string& path) {
  static const std::pair<const char*, const char*> kTypes[] = {
      {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
      {".json", "application/json"}, {".svg", "image/svg+xml"}, {".png", "image/png"}, {".jpg", "image/jpeg"},
      {".ico", "image/x-icon"}, {".woff2", "font/woff2"}, {".woff", "font/woff"}, {".ttf", "font/ttf"},
      {".txt", "text/plain; charset=utf-8"}, {".map", "application/json"}, {".wasm", "application/wasm"},
      {".safetensors", "application/octet-stream"}};
  const std::string ext = lower(fs::path(path).extension().string());
  for (const auto& [e, t] : kTypes)
    if (ext == e) return t;
  return "application/octet-stream";
}

bool compressible(const std::string& type) {
  return type.starts_with("text/") || type.starts_with("application/json") || type == "image/svg+xml";
}

std::string gzip(const std::string& in) {
  z_stream zs{};
  if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return {};
  std::string out(deflateBound(&zs, uLong(in.size())), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = uInt(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = uInt(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return rc == Z_STREAM_END ? out : std::string();
}


}  // namespace

std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += char(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else if (s[i] == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::optional<Refusal> parse_request_head(std::string_view head, int max_fields, Request* out, bool* keep_alive) {
  Request& req = *out;
  req = Request();
  const size_t line_end = head.find("\r\n");
  const std::string_view line = head.substr(0, line_end);
  const size_t s1 = line.find(' '), s2 = line.rfind(' ');
  if (s1 == std::string_view::npos || s2 == s1) {
    return Refusal{400, "bad_request", "request line: expected METHOD TARGET HTTP/1.1"};
  }
  req.method = std::string(line.substr(0, s1));
  req.target = std::string(line.substr(s1 + 1, s2 - s1 - 1));
  const std::string_view version = line.substr(s2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    return Refusal{400, "bad_request", "request line: expected HTTP/1.1 or HTTP/1.0"};
  }
  if (req.method.empty() || req.method.size() > 16 || req.target.empty()) {
    return Refusal{400, "bad_request", "request line: expected METHOD TARGET HTTP/1.1"};
  }
  for (char ch : req.method)
    if (ch < 'A' || ch > 'Z') {
      return Refusal{400, "bad_request", "request line: expected an upper-case method"};
    }
  *keep_alive = version == "HTTP/1.1";
  size_t pos = line_end == std::string_view::npos ? head.size() : line_end + 2;
  // RFC 9110 5.6.2: a field name is a token.
  auto token = [](std::string_view name) {
    for (unsigned char ch : name)
      if (!(std::isalnum(ch) || std::strchr("!#$%&'*+-.^_`|~", ch))) return false;
    return !name.empty();
  };
  int fields = 0;
  while (pos < head.size()) {
    size_t e = head.find("\r\n", pos);
    if (e == std::string_view::npos) e = head.size();
    const std::string_view f = head.substr(pos, e - pos);
    pos = e + 2;
    if (f.empty()) continue;
    if (++fields > max_fields) {
      return Refusal{431, "headers_too_large", "request headers: expected at most " + std::to_string(max_fields) + " fields"};
    }
    const size_t colon = f.find(':');
    if (colon == std::string_view::npos || !token(f.substr(0, colon))) {
      return Refusal{400, "bad_request", "request headers: expected NAME: VALUE on each line, NAME a token"};
    }
    std::string name = lower(std::string(f.substr(0, colon)));
    // One length per request: two Content-Lengths (or a length with a transfer coding) are how requests
    // are smuggled past a proxy.
    if ((name == "content-length" || name == "host") && req.header(name))
      return Refusal{400, "bad_request", "request headers: expected one " + name + ", got two"};
    req.headers.emplace_back(std::move(name), trim(f.substr(colon + 1)));
  }
  if (const std::string* conn = req.header("connection")) {
    const std::string v = lower(*conn);
    if (v.find("close") != std::string::npos) *keep_alive = false;
    if (v.find("keep-alive") != std::string::npos) *keep_alive = true;
  }
  const size_t q = req.target.find('?');
  const std::string raw_path = req.target.substr(0, q);
  if (raw_path.empty() || raw_path[0] != '/') {
    return Refusal{400, "bad_request", "request target: expected a path starting with /"};
  }
  req.path = percent_decode(raw_path, false);
  if (q != std::string::npos) {
    std::string_view qs = std::string_view(req.target).substr(q + 1);
    while (!qs.empty()) {
      const size_t amp = qs.find('&');
      const std::string_view kv = qs.substr(0, amp);
      const size_t eq = kv.find('=');
      if (!kv.empty())
        req.query.emplace(percent_decode(kv.substr(0, eq), true),
                          eq == std::string_view::npos ? std::string() : percent_decode(kv.substr(eq + 1), true));
      if (amp == std::string_view::npos) break;
      qs = qs.substr(amp + 1);
    }
  }
  return std::nullopt;
}

const std::string* Request::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return &v;
  return nullptr;
}

std::string Request::param(const std::string& name) const {
  auto it = query.find(name);
  return it == query.end() ? std::string() : it->second;
}

// ---- The server ----------------------------------------------------------------------------------

struct Server::Impl {
  struct Route {
    std::string method, pattern;
    std::regex re;
    Handler handler;
    RouteOptions options;
  };

  // draining: the answer is out and the connection is closing; what the client still sends is read
  // and dropped for a moment, so that it sees the answer rather than a reset.
  enum class State { head, body, handling, writing, streaming, draining };

  struct Conn {
    uint64_t id = 0;
    int fd = -1;
    std::string addr;
    State state = State::head;
    std::string in, out;
    size_t out_off = 0;
    double idle_since = 0, head_since = -1, body_since = 0, last_write = 0, req_start = 0;
    Request req;
    const Route* route = nullptr;
    bool is_static = false;
    int file_fd = -1;
    int64_t body_left = 0;
    bool keep_alive = true, close_after = false, head_only = false;
    int status = 0;
    size_t bytes = 0;
    std::function<bool(std::string&)> stream;
    bool want_out = false, want_in = true, peer_closed = false;
    int64_t reserved = 0;  // bytes of in-memory body counted against Options::max_inflight_body_bytes
    double drain_since = 0;
  };

  struct Task {
    uint64_t conn;
    Request req;
    const Route* route;
    bool is_static;
  };
  struct Done {
    uint64_t conn;
    Response res;
  };

  Options o;
  std::vector<std::unique_ptr<Route>> routes;
  int listen_fd = -1, epoll_fd = -1, wake_fd = -1;
  std::atomic<bool> stopping{false};
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns;
  std::unordered_map<std::string, int> per_addr;
  std::vector<uint64_t> pending_input;  // kept-alive connections with a pipelined request already in
  uint64_t next_id = 16;
  int streams = 0;
  int64_t inflight = 0;  // in-memory request bodies being read or handled
  std::string hostname;

  std::mutex mu;  // tasks, done, counters below
  std::condition_variable cv;
  std::deque<Task> tasks;
  std::vector<Done> done;
  int busy = 0;
  std::atomic<int> n_conns{0}, n_streams{0};
  std::vector<std::thread> workers;

  struct Cached {
    fs::file_time_type mtime;
    std::string body, gz;
  };
  std::mutex cache_mu;
  std::unordered_map<std::string, Cached> cache;

  static constexpr uint64_t kListen = 1, kWake = 2;

  // ---- epoll bookkeeping ----
  void watch(Conn& c) {
    epoll_event ev{};
    ev.events = (c.want_in ? EPOLLIN : 0u) | (c.want_out ? EPOLLOUT : 0u) | (c.peer_closed ? 0u : EPOLLRDHUP);
    ev.data.u64 = c.id;
    epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c.fd, &ev);
  }
  void set_interest(Conn& c, bool in, bool out) {
    if (c.want_in == in && c.want_out == out) return;
    c.want_in = in;
    c.want_out = out;
    watch(c);
  }

  void close_conn(uint64_t id) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    Conn& c = *it->second;
    if (c.file_fd >= 0) {
      ::close(c.file_fd);
      c.file_fd = -1;
    }
    if (!c.req.body_file.empty() && c.state != State::handling) {
      std::error_code ec;
      fs::remove(c.req.body_file, ec);
    }
    if (c.state == State::streaming) --streams;
    inflight -= c.reserved;
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    if (--per_addr[c.addr] <= 0) per_addr.erase(c.addr);
    conns.erase(it);
    n_conns = int(conns.size());
    n_streams = streams;
  }

  // ---- answers ----
  void begin_answer(Conn& c, Response& res) {
    inflight -= c.reserved;  // the body has been handled (or refused)
    c.reserved = 0;
    std::string head = "HTTP/1.1 " + std::to_string(res.status) + " " + reason(res.status) + "\r\n";
    bool has_type = false;
    for (const auto& [k, v] : res.headers) {
      head += k + ": " + v + "\r\n";
      has_type = has_type || lower(k) == "content-type";
    }
    if (!has_type && (!res.body.empty() || res.stream)) head += "Content-Type: " + res.content_type + "\r\n";
    head += "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n";
    if (c.req.path.starts_with("/api/")) head += "Cache-Control: no-store\r\n";
    const std::string* origin = c.req.header("origin");
    if (!o.cors_origin.empty() && origin && *origin == o.cors_origin)
      head += "Access-Control-Allow-Origin: " + o.cors_origin + "\r\nVary: Origin\r\n";
    if (c.close_after || !c.keep_alive || stopping) {
      c.keep_alive = false;
      head += "Connection: close\r\n";
    }
    c.status = res.status;
    if (res.stream) {
      head += "Transfer-Encoding: chunked\r\nX-Accel-Buffering: no\r\n\r\n";
      c.out += head;
      c.stream = std::move(res.stream);
      c.state = State::streaming;
      ++streams;
      n_streams = streams;
      if (!poll_stream(c)) return;
    } else {
      head += "Content-Length: " + std::to_string(res.body.size()) + "\r\n\r\n";
      c.out += head;
      if (!c.head_only) c.out += res.body;
      c.bytes = res.body.size();
      c.state = State::writing;
    }
    c.last_write = now_s();
    flush(c);
  }

  // An answer made by the layer itself (an error, a preflight); the connection closes after it when
  // the request's body was not read.
  void answer(Conn& c, int status, const std::string& code, const std::string& message, bool close,
              std::vector<std::pair<std::string, std::string>> headers = {}) {
    Response r;
    r.status = status;
    if (!code.empty()) r.body = error_json(status, code, message);
    r.headers = std::move(headers);
    if (close) c.close_after = true;
    if (c.file_fd >= 0) {
      ::close(c.file_fd);
      c.file_fd = -1;
    }
    if (!c.req.body_file.empty()) {
      std::error_code ec;
      fs::remove(c.req.body_file, ec);
      c.req.body_file.clear();
    }
    begin_answer(c, r);
  }

  void finish_answer(Conn& c) {
    if (o.log) o.log(c.req, c.status, c.bytes, (now_s() - c.req_start) * 1e3);
    if (!c.keep_alive) {
      if (c.peer_closed) {
        close_conn(c.id);
        return;
      }
      ::shutdown(c.fd, SHUT_WR);
      c.state = State::draining;
      c.drain_since = now_s();
      c.in.clear();
      set_interest(c, true, false);
      return;
    }
    c.state = State::head;
    c.req = Request();
    c.route = nullptr;
    c.is_static = false;
    c.out.clear();
    c.out_off = 0;
    c.stream = nullptr;
    c.head_only = false;
    c.bytes = 0;
    c.idle_since = now_s();
    c.head_since = c.in.empty() ? -1 : c.idle_since;
    set_interest(c, true, false);
    if (!c.in.empty()) pending_input.push_back(c.id);
  }

  // Writes what it can; on the end of a plain answer, goes on to the next request or closes.
  void flush(Conn& c) {
    const uint64_t id = c.id;
    while (c.out_off < c.out.size()) {
      const ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_off += size_t(n);
        c.last_write = now_s();
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      close_conn(id);
      return;
    }
    if (c.out_off == c.out.size()) {
      c.out.clear();
      c.out_off = 0;
    } else if (c.out_off > (1 << 20)) {
      c.out.erase(0, c.out_off);
      c.out_off = 0;
    }
    const bool pending = !c.out.empty();
    if (c.state == State::writing && !pending) {
      finish_answer(c);
      return;
    }
    const bool in = c.state == State::head || c.state == State::body || c.state == State::streaming ||
                    c.state == State::draining;
    set_interest(c, in, pending);
  }

  // False when the connection was closed.
  bool poll_stream(Conn& c) {
    if (c.out.size() - c.out_off > size_t(o.max_stream_backlog)) {  // the client does not read
      close_conn(c.id);
      return false;
    }
    std::string data;
    bool alive = true;
    try {
      alive = c.stream(data);
    } catch (...) {
      alive = false;
    }
    if (!data.empty()) {
      char len[32];
      std::snprintf(len, sizeof len, "%zx\r\n", data.size());
      c.out += len;
      c.out += data;
      c.out += "\r\n";
      c.bytes += data.size();
    }
    if (!alive) {
      c.out += "0\r\n\r\n";
      c.stream = nullptr;
      c.state = State::writing;
      --streams;
      n_streams = streams;
    }
    return true;
  }

  // ---- requests ----
  const Route* find_route(const Request& req, std::vector<std::string>* allow, std::vector<std::string>* groups) {
    const Route* hit = nullptr;
    for (const auto& r : routes) {
      std::smatch m;
      if (!std::regex_match(req.path, m, r->re)) continue;
      if (std::find(allow->begin(), allow->end(), r->method) == allow->end()) allow->push_back(r->method);
      if (!hit && (r->method == req.method || (req.method == "HEAD" && r->method == "GET"))) {
        hit = r.get();
        groups->clear();
        for (const auto& g : m) groups->push_back(g.str());
      }
    }
    return hit;
  }

  bool host_allowed(const std::string& authority) const {
    const std::string name = host_name(authority);
    if (name.empty()) return false;
    if (is_ip_literal(name) || name == "localhost" || name.ends_with(".localhost")) return true;
    if (!hostname.empty() && (name == hostname || name == hostname + ".local")) return true;
    for (const std::string& h : o.allowed_hosts)
      if (name == lower(h)) return true;
    return name == lower(host_name(o.host));
  }

  // Refusal of a state-changing request from another site: its Origin is neither this server's own
  // (scheme://Host) nor the configured CORS origin.
  bool origin_allowed(const Request& req) const {
    const std::string* origin = req.header("origin");
    if (!origin) {
      const std::string* site = req.header("sec-fetch-site");
      return !site || *site != "cross-site";
    }
    if (!o.cors_origin.empty() && *origin == o.cors_origin) return true;
    const std::string* host = req.header("host");
    if (!host) return false;
    for (const char* scheme : {"http://", "https://"})
      if (lower(*origin) == scheme + lower(*host)) return true;
    return false;
  }

  // Parses the head in c.in[0, end); returns false (after answering) when it is refused.
  bool parse_head(Conn& c, size_t end) {
    if (std::optional<Refusal> no = parse_request_head(std::string_view(c.in.data(), end), o.max_header_fields, &c.req,
                                                       &c.keep_alive)) {
      c.req.remote_addr = c.addr;
      answer(c, no->status, no->code, no->message, true);
      return false;
    }
    c.req.remote_addr = c.addr;
    return true;
  }

  void on_head(Conn& c) {
    Request& req = c.req;
    c.req_start = now_s();
    const std::string* host = req.header("host");
    if (!host) {
      answer(c, 400, "bad_request", "Host: a required header (HTTP/1.1)", true);
      return;
    }
    if (!host_allowed(*host)) {
      answer(c, 421, "misdirected_request",
             "Host: expected one of this server's names (localhost, an IP address, " +
                 (hostname.empty() ? std::string() : hostname + ", ") +
                 "or one given with --allowed-host), got \"" + *host + "\"",
             true);
      return;
    }
    std::vector<std::string> allow, groups;
    const Route* route = find_route(req, &allow, &groups);
    const bool api = req.path.starts_with("/api/") || req.path == "/api";
    if (!route && !allow.empty()) {
      std::string list;
      std::vector<std::string> methods = allow;
      if (std::find(methods.begin(), methods.end(), "GET") != methods.end()) methods.push_back("HEAD");
      methods.push_back("OPTIONS");
      for (const std::string& m : methods) list += (list.empty() ? "" : ", ") + m;
      if (req.method == "OPTIONS") {
        const std::string* origin = req.header("origin");
        if (origin && !o.cors_origin.empty() && *origin == o.cors_origin) {
          answer(c, 204, "", "", false,
                 {{"Access-Control-Allow-Methods", list},
                  {"Access-Control-Allow-Headers", "Content-Type, X-CSRF-Token, X-Delete-Token"},
                  {"Access-Control-Max-Age", "600"},
                  {"Allow", list}});
        } else if (origin && !origin_allowed(req)) {
          answer(c, 403, "forbidden_origin", "Origin: \"" + *origin + "\" may not call this server (no --cors-origin for it)", true);
        } else {
          answer(c, 204, "", "", false, {{"Allow", list}});
        }
        return;
      }
      answer(c, 405, "method_not_allowed", req.method + " " + req.path + ": expected one of " + list, true,
             {{"Allow", list}});
      return;
    }
    const bool safe = req.method == "GET" || req.method == "HEAD" || req.method == "OPTIONS";
    if (!route) {
      if (api || o.static_dir.empty()) {
        answer(c, 404, "not_found", req.method + " " + req.path + ": no such endpoint (see docs/api.md)", true);
        return;
      }
      if (req.method != "GET" && req.method != "HEAD") {
        answer(c, 405, "method_not_allowed", req.method + " " + req.path + ": expected one of GET, HEAD", true,
               {{"Allow", "GET, HEAD"}});
        return;
      }
      c.is_static = true;
    }
    if (!safe && !origin_allowed(req)) {
      const std::string* origin = req.header("origin");
      answer(c, 403, "forbidden_origin",
             "Origin: expected this server's own origin" +
                 (o.cors_origin.empty() ? std::string() : " or " + o.cors_origin) + ", got \"" +
                 (origin ? *origin : std::string("a cross-site request")) + "\"",
             true);
      return;
    }
    c.head_only = req.method == "HEAD";
    req.matches = std::move(groups);
    c.route = route;
    if (req.header("transfer-encoding")) {
      answer(c, 411, "length_required", "request body: expected a Content-Length (chunked request bodies are not accepted)", true);
      return;
    }
    int64_t length = 0;
    if (const std::string* cl = req.header("content-length")) {
      if (cl->empty() || cl->size() > 15 || !std::all_of(cl->begin(), cl->end(), ::isdigit)) {
        answer(c, 400, "bad_request", "Content-Length: expected a non-negative integer, got \"" + cl->substr(0, 40) + "\"", true);
        return;
      }
      length = std::stoll(*cl);
    }
    req.content_length = length;
    const int64_t max = route && route->options.max_body >= 0 ? route->options.max_body : o.max_body_bytes;
    if (length > max) {
      answer(c, 413, "too_large",
             "request body: expected at most " + std::to_string(max) + " bytes, got " + std::to_string(length), true);
      return;
    }
    if (route && length > 0 && !route->options.content_types.empty()) {
      const std::string* ct = req.header("content-type");
      const std::string type = ct ? media_type(*ct) : std::string();
      const auto& ok = route->options.content_types;
      if (std::find(ok.begin(), ok.end(), type) == ok.end()) {
        std::string list;
        for (const std::string& t : ok) list += (list.empty() ? "" : " or ") + t;
        answer(c, 415, "unsupported_media_type",
               "Content-Type: expected " + list + ", got \"" + (ct ? ct->substr(0, 60) : std::string("none")) + "\"", true);
        return;
      }
    }
    if (route && route->options.before_body) {
      std::optional<Refusal> no;
      try {
        no = route->options.before_body(req);
      } catch (...) {
        no = Refusal{503, "unavailable", "the server could not check this request"};
      }
      if (no) {
        answer(c, no->status, no->code, no->message, true);
        return;
      }
    }
    if ((!route || route->options.body_dir.empty()) && length > 0) {
      if (inflight + length > o.max_inflight_body_bytes) {
        answer(c, 503, "server_busy", "request bodies: the server is reading or handling " + std::to_string(inflight >> 20) +
                                          " MiB of them: try again shortly", true, {{"Retry-After", "1"}});
        return;
      }
      inflight += length;
      c.reserved = length;
    }
    if (const std::string* expect = req.header("expect"); expect && lower(*expect) == "100-continue" && length > 0)
      c.out += "HTTP/1.1 100 Continue\r\n\r\n";
    if (route && !route->options.body_dir.empty() && length > 0) {
      const std::string path = (fs::path(route->options.body_dir) / (".part-" + random_token(8))).string();
      c.file_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (c.file_fd < 0) {
        answer(c, 507, "storage_full", "request body: the server cannot store it now (" + std::string(std::strerror(errno)) + ")", true);
        return;
      }
      req.body_file = path;
    }
    c.body_left = length;
    c.body_since = now_s();
    c.state = State::body;
    if (!c.out.empty()) flush(c);
  }

  void dispatch(Conn& c) {
    c.state = State::handling;
    set_interest(c, false, false);
    {
      std::lock_guard lock(mu);
      tasks.push_back(Task{c.id, std::move(c.req), c.route, c.is_static});
      c.req = Request();
      c.req.method = tasks.back().req.method;
      c.req.path = tasks.back().req.path;
      c.req.remote_addr = c.addr;
      c.req.headers = tasks.back().req.headers;
    }
    cv.notify_one();
  }

  // Moves what has arrived through the head and body states.
  void process_input(Conn& c) {
    const uint64_t id = c.id;
    while (conns.count(id)) {
      if (c.state == State::head) {
        // Blank lines before a request are allowed (RFC 9112 2.2).
        while (c.in.starts_with("\r\n")) c.in.erase(0, 2);
        if (c.in.empty()) return;
        if (c.head_since < 0) c.head_since = now_s();
        const size_t end = c.in.find("\r\n\r\n");
        if (end == std::string::npos) {
          if (int64_t(c.in.size()) > o.max_header_bytes) {
            c.in.clear();
            answer(c, 431, "headers_too_large",
                   "request head: expected at most " + std::to_string(o.max_header_bytes) + " bytes of request line and headers", true);
          }
          return;
        }
        if (int64_t(end) + 4 > o.max_header_bytes) {
          c.in.clear();
          answer(c, 431, "headers_too_large",
                 "request head: expected at most " + std::to_string(o.max_header_bytes) + " bytes of request line and headers", true);
          return;
        }
        c.req = Request();
        c.req.remote_addr = c.addr;
        const bool ok = parse_head(c, end);
        c.in.erase(0, end + 4);
        if (!ok) return;
        on_head(c);
        if (!conns.count(id) || c.state != State::body) return;
      }
      if (c.state == State::body) {
        const size_t take = size_t(std::min<int64_t>(c.body_left, int64_t(c.in.size())));
        if (take > 0) {
          if (c.file_fd >= 0) {
            size_t done_bytes = 0;
            while (done_bytes < take) {
              const ssize_t n = ::write(c.file_fd, c.in.data() + done_bytes, take - done_bytes);
              if (n < 0 && errno == EINTR) continue;
              if (n <= 0) {
                const int err = n < 0 ? errno : ENOSPC;
                c.in.clear();
                answer(c, 507, "storage_full",
                       "request body: the server's disk is full or over its limit, nothing was kept (" +
                           std::string(std::strerror(err)) + ")",
                       true);
                return;
              }
              done_bytes += size_t(n);
            }
          } else {
            c.req.body.append(c.in, 0, take);
          }
          c.in.erase(0, take);
          c.body_left -= int64_t(take);
        }
        if (c.body_left > 0) return;
        if (c.file_fd >= 0) {
          const bool ok = ::fsync(c.file_fd) == 0;
          ::close(c.file_fd);
          c.file_fd = -1;
          if (!ok) {
            answer(c, 507, "storage_full", "request body: the server could not store it (" + std::string(std::strerror(errno)) + ")", true);
            return;
          }
        }
        dispatch(c);
        return;
      }
      return;  // handling, writing, streaming: input waits
    }
  }

  void on_readable(Conn& c) {
    const uint64_t id = c.id;
    char buf[65536];
    for (;;) {
      const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n > 0) {
        // An event stream's client has nothing to say; a closing one's words are dropped.
        if (c.state == State::streaming || c.state == State::draining) continue;
        c.in.append(buf, size_t(n));
        if (c.state == State::head && int64_t(c.in.size()) > o.max_header_bytes + (64 << 10)) break;
        if (c.state == State::body && int64_t(c.in.size()) >= (1 << 20)) break;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      // The peer closed (or an error): nothing more will come.
      if (c.state == State::streaming || c.state == State::body || c.state == State::draining ||
          (c.state == State::head && c.in.empty())) {
        close_conn(id);
        return;
      }
      c.keep_alive = false;
      c.peer_closed = true;
      watch(c);
      break;
    }
    process_input(c);
    // A head that can no longer complete.
    auto it = conns.find(id);
    if (it != conns.end() && it->second->peer_closed && it->second->state == State::head) close_conn(id);
  }

  void on_accept() {
    for (;;) {
      sockaddr_storage sa{};
      socklen_t len = sizeof sa;
      const int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&sa), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      char ip[INET6_ADDRSTRLEN] = "?";
      if (sa.ss_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&sa)->sin_addr, ip, sizeof ip);
      else if (sa.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&sa)->sin6_addr, ip, sizeof ip);
      const std::string addr = ip;
      const bool over_all = int(conns.size()) >= o.max_connections;
      const bool over_addr = per_addr[addr] >= o.max_connections_per_address;
      if (over_all || over_addr) {
        if (per_addr[addr] == 0) per_addr.erase(addr);
        const std::string body = error_json(
            503, "too_many_connections",
            over_addr ? "connections: expected at most " + std::to_string(o.max_connections_per_address) +
                            " open at once from one address (" + addr + ")"
                      : "connections: the server has its " + std::to_string(o.max_connections) + " open: try again shortly");
        const std::string msg = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                                "Connection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
        (void)!::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        ::close(fd);
        continue;
      }
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto c = std::make_unique<Conn>();
      c->id = next_id++;
      c->fd = fd;
      c->addr = addr;
      c->idle_since = now_s();
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.u64 = c->id;
      epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
      ++per_addr[addr];
      conns[c->id] = std::move(c);
      n_conns = int(conns.size());
    }
  }

  void sweep() {
    const double t = now_s();
    std::vector<uint64_t> ids;
    ids.reserve(conns.size());
    for (const auto& [id, c] : conns) ids.push_back(id);
    for (uint64_t id : ids) {
      auto it = conns.find(id);
      if (it == conns.end()) continue;
      Conn& c = *it->second;
      const bool pending = c.out.size() > c.out_off;
      if (pending && t - c.last_write > o.write_timeout_s) {
        close_conn(id);
        continue;
      }
      if (c.state == State::draining) {
        if (t - c.drain_since > 2) close_conn(id);
      } else if (c.state == State::head) {
        if (c.head_since < 0 && c.in.empty()) {
          if (t - c.idle_since > o.idle_timeout_s) close_conn(id);
        } else if (c.head_since >= 0 && t - c.head_since > o.header_timeout_s && !pending) {
          c.in.clear();
          answer(c, 408, "request_timeout",
                 "request head: expected it within " + std::to_string(int(o.header_timeout_s)) + " s", true);
        }
      } else if (c.state == State::body && t - c.body_since > o.body_timeout_s) {
        c.in.clear();
        answer(c, 408, "request_timeout", "request body: expected it within " + std::to_string(int(o.body_timeout_s)) + " s", true);
      } else if (c.state == State::streaming) {
        if (poll_stream(c)) flush(c);
      }
    }
  }

  void take_done() {
    std::vector<Done> ready;
    {
      std::lock_guard lock(mu);
      ready.swap(done);
    }
    for (Done& d : ready) {
      auto it = conns.find(d.conn);
      if (it == conns.end()) continue;
      Conn& c = *it->second;
      if (d.res.stream && streams >= o.max_streams) {
        Response busy;
        busy.status = 503;
        busy.body = error_json(503, "too_many_streams",
                               "event streams: the server has its " + std::to_string(o.max_streams) + " open: try again shortly");
        busy.headers = {{"Retry-After", "5"}};
        begin_answer(c, busy);
        continue;
      }
      begin_answer(c, d.res);
    }
  }

  void poll_streams() {
    std::vector<uint64_t> ids;
    for (const auto& [id, c] : conns)
      if (c->state == State::streaming) ids.push_back(id);
    for (uint64_t id : ids) {
      auto it = conns.find(id);
      if (it == conns.end()) continue;
      if (poll_stream(*it->second)) flush(*it->second);
    }
  }

  // ---- handler threads ----
  void worker() {
    if (o.on_thread_start) o.on_thread_start();
    for (;;) {
      Task t;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return stopping || !tasks.empty(); });
        if (stopping) return;
        t = std::move(tasks.front());
        tasks.pop_front();
        ++busy;
      }
      Response res;
      try {
        if (t.is_static)
          serve_static(t.req, res);
        else
          t.route->handler(t.req, res);
      } catch (const std::bad_alloc&) {
        res = Response();
        res.status = 503;
        res.body = error_json(503, "out_of_memory", "the server ran out of memory for this request: expected a smaller one");
      } catch (const std::exception& e) {
        res = Response();
        res.status = 500;
        res.body = error_json(500, "internal", std::string("internal error: ") + e.what());
      } catch (...) {
        res = Response();
        res.status = 500;
        res.body = error_json(500, "internal", "internal error");
      }
      if (!t.req.body_file.empty()) {
        std::error_code ec;
        fs::remove(t.req.body_file, ec);
      }
      {
        std::lock_guard lock(mu);
        --busy;
        done.push_back(Done{t.conn, std::move(res)});
      }
      const uint64_t one = 1;
      (void)!::write(wake_fd, &one, sizeof one);
    }
  }

  void serve_static(const Request& req, Response& res) {
    std::string rel = req.path;
    if (rel.find('\0') != std::string::npos || rel.find("/../") != std::string::npos || rel.ends_with("/..") ||
        rel.find('\\') != std::string::npos) {
      res.status = 404;
      res.body = error_json(404, "not_found", "GET " + req.path + ": no such file");
      return;
    }
    fs::path p = fs::path(o.static_dir) / rel.substr(1);
    std::error_code ec;
    if (fs::is_directory(p, ec)) p /= "index.html";
    const auto mtime = fs::last_write_time(p, ec);
    if (ec || !fs::is_regular_file(p, ec)) {
      res.status = 404;
      res.body = error_json(404, "not_found", "GET " + req.path + ": no such file");
      return;
    }
    const std::string type = mime_of(p.string());
    Cached entry;
    bool hit = false;
    {
      std::lock_guard lock(cache_mu);
      auto it = cache.find(p.string());
      if (it != cache.end() && it->second.mtime == mtime) {
        entry = it->second;
        hit = true;
      }
    }
    if (!hit) {
      std::ifstream in(p, std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      entry.mtime = mtime;
      entry.body = ss.str();
      if (compressible(type) && entry.body.size() > 1024) entry.gz = gzip(entry.body);
      std::lock_guard lock(cache_mu);
      if (cache.size() > 512) cache.clear();
      cache[p.string()] = entry;
    }
    const std::string* ae = req.header("accept-encoding");
    const bool gz = !entry.gz.empty() && ae && ae->find("gzip") != std::string::npos;
    res.status = 200;
    res.content_type = type;
    res.body = gz ? entry.gz : entry.body;
    if (gz) res.set_header("Content-Encoding", "gzip");
    res.set_header("Vary", "Accept-Encoding");
    res.set_header("Cache-Control", req.path.starts_with("/assets/") ? "public, max-age=31536000, immutable" : "no-cache");
  }

  // ---- the loop ----
  void run() {
    for (int i = 0; i < std::max(1, o.threads); ++i) workers.emplace_back([this] { worker(); });
    epoll_event events[256];
    double last_sweep = now_s();
    while (!stopping) {
      const int n = epoll_wait(epoll_fd, events, 256, 100);
      bool woke = false;
      for (int i = 0; i < n; ++i) {
        const uint64_t id = events[i].data.u64;
        if (id == kListen) {
          on_accept();
          continue;
        }
        if (id == kWake) {
          uint64_t v;
          while (::read(wake_fd, &v, sizeof v) > 0) {
          }
          woke = true;
          continue;
        }
        auto it = conns.find(id);
        if (it == conns.end()) continue;
        Conn& c = *it->second;
        if (events[i].events & (EPOLLHUP | EPOLLERR)) {
          close_conn(id);
          continue;
        }
        if (events[i].events & (EPOLLIN | EPOLLRDHUP)) {
          on_readable(c);
          if (!conns.count(id)) continue;
        }
        if (events[i].events & EPOLLOUT) flush(c);
      }
      if (woke) {
        take_done();
        poll_streams();
      }
      while (!pending_input.empty()) {
        std::vector<uint64_t> ids;
        ids.swap(pending_input);
        for (uint64_t id : ids)
          if (auto it = conns.find(id); it != conns.end() && it->second->state == State::head) process_input(*it->second);
      }
      const double t = now_s();
      if (t - last_sweep >= 0.25) {
        last_sweep = t;
        sweep();
      }
    }
    {
      std::lock_guard lock(mu);
      tasks.clear();
    }
    cv.notify_all();
    for (std::thread& w : workers) w.join();
    workers.clear();
    std::vector<uint64_t> ids;
    for (const auto& [id, c] : conns) ids.push_back(id);
    for (uint64_t id : ids) close_conn(id);
  }
};

Server::Server(Options options) : impl_(std::make_unique<Impl>()) {
  impl_->o = std::move(options);
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) == 0) impl_->hostname = lower(name);
  impl_->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  impl_->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = Impl::kWake;
  epoll_ctl(impl_->epoll_fd, EPOLL_CTL_ADD, impl_->wake_fd, &ev);
}

Server::~Server() {
  stop();
  if (impl_->listen_fd >= 0) ::close(impl_->listen_fd);
  ::close(impl_->wake_fd);
  ::close(impl_->epoll_fd);
}

void Server::route(const std::string& method, const std::string& pattern, Handler handler, RouteOptions options) {
  auto r = std::make_unique<Impl::Route>();
  r->method = method;
  r->pattern = pattern;
  r->re = std::regex(pattern);
  r->handler = std::move(handler);
  r->options = std::move(options);
  impl_->routes.push_back(std::move(r));
}

Result<int> Server::bind() {
  const Options& o = impl_->o;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(o.port);
  const std::string where = o.host + ":" + port;
  if (getaddrinfo(o.host.c_str(), port.c_str(), &hints, &res) != 0 || !res)
    return Status::error(where + ": cannot listen (not an address of this machine)");
  int fd = -1;
  for (addrinfo* a = res; a; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 1024) == 0) break;
    ::close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) return Status::error(where + ": cannot listen (in use, or not an address of this machine)");
  sockaddr_storage sa{};
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  const int bound = sa.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&sa)->sin6_port)
                                             : ntohs(reinterpret_cast<sockaddr_in*>(&sa)->sin_port);
  impl_->listen_fd = fd;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = Impl::kListen;
  epoll_ctl(impl_->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
  return bound;
}

void Server::run() { impl_->run(); }

void Server::stop() {
  impl_->stopping = true;
  impl_->cv.notify_all();
  wake();
}

void Server::wake() {
  const uint64_t one = 1;
  (void)!::write(impl_->wake_fd, &one, sizeof one);
}

Server::Stats Server::stats() const {
  Stats s;
  s.connections = impl_->n_conns;
  s.streams = impl_->n_streams;
  std::lock_guard lock(impl_->mu);
  s.busy_handlers = impl_->busy;
  s.queued_requests = int(impl_->tasks.size());
  return s;
}

}  // namespace blocklab::server::http
