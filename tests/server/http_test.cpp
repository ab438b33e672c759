// The HTTP layer (server/http.h) as a hostile client meets it: raw sockets on loopback, slow heads,
// floods of headers, too many connections, cross-site requests, event streams that never end. Each
// case checks the answer and that the server still answers a plain request at once.
#include "server/http.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

namespace blocklab::server::http {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// A blocking loopback socket with a receive timeout.
struct Sock {
  int fd = -1;
  explicit Sock(int port, double timeout_s = 5) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{long(timeout_s), long((timeout_s - long(timeout_s)) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ~Sock() {
    if (fd >= 0) ::close(fd);
  }
  bool send(const std::string& s) const {
    size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += size_t(n);
    }
    return true;
  }
  // Reads until `until` appears, the peer closes, or the timeout (starting with what a previous answer()
  // read past its end: pipelined answers may arrive in one segment).
  std::string recv_until(const std::string& until = "", size_t max = 1 << 20) const {
    std::string got;
    got.swap(pending);
    char buf[4096];
    while (got.size() < max && (until.empty() || got.find(until) == std::string::npos)) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, size_t(n));
      if (!until.empty() && got.find(until) != std::string::npos) break;
    }
    return got;
  }
  // One whole answer with a Content-Length body.
  std::string answer() const {
    std::string got = recv_until("\r\n\r\n");
    const size_t head = got.find("\r\n\r\n");
    if (head == std::string::npos) return got;
    const size_t cl = got.find("Content-Length: ");
    if (cl == std::string::npos || cl > head) return got;
    const size_t len = std::stoul(got.substr(cl + 16));
    char buf[4096];
    while (got.size() < head + 4 + len) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, size_t(n));
    }
    if (got.size() > head + 4 + len) {  // the next answer's first bytes: kept for the next read
      pending = got.substr(head + 4 + len);
      got.resize(head + 4 + len);
    }
    return got;
  }
  mutable std::string pending;
};

int status_of(const std::string& answer) { return answer.size() > 12 ? std::atoi(answer.c_str() + 9) : 0; }

class HttpTest : public ::testing::Test {
 protected:
  void start(Options o = {}) {
    o.port = 0;
    if (o.threads == 8) o.threads = 2;
    server_ = std::make_unique<Server>(o);
    server_->route("GET", "/api/health", [](const Request&, Response& r) { r.body = R"({"status":"ok"})"; });
    RouteOptions json_body;
    json_body.content_types = {"application/json"};
    server_->route("POST", "/api/echo", [](const Request& q, Response& r) { r.body = q.body; }, json_body);
    server_->route("GET", "/api/slow", [](const Request&, Response& r) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      r.body = "{}";
    });
    server_->route("GET", "/api/stream", [this](const Request&, Response& r) {
      r.content_type = "text/event-stream";
      r.stream = [this](std::string& out) {
        const int n = ticks_.load();
        if (n > 0) out += "data: " + std::to_string(n) + "\n\n";
        return true;
      };
    });
    port_ = server_->bind().value();
    thread_ = std::thread([this] { server_->run(); });
  }
  void TearDown() override {
    if (server_) {
      server_->stop();
      thread_.join();
    }
  }
  // A plain request answers at once (well within a second) while whatever the test set up goes on.
  void expect_responsive() {
    const auto t0 = Clock::now();
    Sock s(port_, 2);
    ASSERT_GE(s.fd, 0);
    s.send("GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const std::string a = s.answer();
    EXPECT_EQ(status_of(a), 200) << a;
    EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 1.0);
  }
  std::string ask(const std::string& request) {
    Sock s(port_);
    s.send(request);
    return s.answer();
  }

  std::unique_ptr<Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> ticks_{0};
};

TEST_F(HttpTest, NonUtf8PathsAndBadRequestLinesAreClearErrors) {
  Options o;
  std::atomic<int> logged{0};
  o.log = [&](const Request& r, int, size_t, double) {
    (void)json{{"path", r.path}}.dump(-1, ' ', false, json::error_handler_t::replace);
    if (r.remote_addr == "127.0.0.1") ++logged;  // the log names the client
  };
  start(o);
  for (const char* path : {"/%ff", "/api/%ff%fe", "/%c3%28", "/%"}) {
    const std::string a = ask(std::string("GET ") + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    EXPECT_EQ(status_of(a), 404) << path << ": " << a;
    EXPECT_NE(a.find("\"not_found\""), std::string::npos);
  }
  EXPECT_EQ(status_of(ask("BLAH\r\n\r\n")), 400);
  EXPECT_EQ(status_of(ask("GET / HTTP/9\r\nHost: x\r\n\r\n")), 400);
  EXPECT_EQ(status_of(ask("GET /api/health HTTP/1.1\r\n\r\n")), 400);  // no Host
  EXPECT_EQ(status_of(ask("GET nohash HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")), 400);
  EXPECT_GE(logged.load(), 4);
  expect_responsive();
}

TEST_F(HttpTest, HeadersAreCappedInSizeAndCount) {
  start();
  std::string many = "GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (int i = 0; i < 200; ++i) many += "X-" + std::to_string(i) + ": " + std::string(10, 'a') + "\r\n";
  EXPECT_EQ(status_of(ask(many + "\r\n")), 431);
  EXPECT_EQ(status_of(ask("GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + std::string(20000, 'b') + "\r\n\r\n")), 431);
  // 48 MB of headers: refused at 16 kB, without reading the rest.
  {
    Sock s(port_);
    s.send("GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    std::string chunk;
    for (int i = 0; i < 1000; ++i) chunk += "X-A: " + std::string(40, 'a') + "\r\n";
    for (int i = 0; i < 1000 && s.send(chunk); ++i) {
    }
    EXPECT_EQ(status_of(s.recv_until("\r\n\r\n")), 431);
  }
  expect_responsive();
}

TEST_F(HttpTest, SlowClientsHoldNoThreadAndAreTimedOut) {
  Options o;
  o.threads = 1;
  o.header_timeout_s = 1.5;
  start(o);
  std::vector<std::unique_ptr<Sock>> slow;
  for (int i = 0; i < 24; ++i) {
    slow.push_back(std::make_unique<Sock>(port_, 5));
    slow.back()->send("GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
  }
  for (int i = 0; i < 3; ++i) {
    for (auto& s : slow) s->send("a");
    expect_responsive();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  // Past the head's deadline: 408, and the connection is closed.
  std::this_thread::sleep_for(std::chrono::milliseconds(900));
  for (auto& s : slow) s->send("a");
  const std::string a = slow[0]->recv_until("\r\n\r\n");
  EXPECT_EQ(status_of(a), 408) << a;
  expect_responsive();
}

TEST_F(HttpTest, EventStreamsHoldNoThread) {
  Options o;
  o.threads = 1;
  start(o);
  std::vector<std::unique_ptr<Sock>> watchers;
  for (int i = 0; i < 24; ++i) {
    watchers.push_back(std::make_unique<Sock>(port_, 3));
    watchers.back()->send("GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  }
  for (auto& w : watchers) EXPECT_NE(w->recv_until("\r\n\r\n").find("Transfer-Encoding: chunked"), std::string::npos);
  expect_responsive();
  ticks_ = 1;
  server_->wake();
  for (auto& w : watchers) EXPECT_NE(w->recv_until("data: 1").find("data: 1"), std::string::npos);
  EXPECT_EQ(server_->stats().streams, 24);
  expect_responsive();
}

TEST_F(HttpTest, ConnectionsPerAddressAreCapped) {
  Options o;
  o.max_connections_per_address = 10;
  start(o);
  std::vector<std::unique_ptr<Sock>> idle;
  for (int i = 0; i < 10; ++i) idle.push_back(std::make_unique<Sock>(port_));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const std::string refused = ask("GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  EXPECT_EQ(status_of(refused), 503) << refused;
  EXPECT_NE(refused.find("too_many_connections"), std::string::npos);
  idle.clear();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  expect_responsive();
}

TEST_F(HttpTest, CrossSiteRequestsAreRefused) {
  Options o;
  o.cors_origin = "http://app.example";
  start(o);
  const std::string body = R"({"a": 1})";
  auto post = [&](const std::string& extra, const std::string& type = "application/json") {
    return ask("POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port_) + "\r\nContent-Type: " + type +
               "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body);
  };
  EXPECT_EQ(status_of(post("")), 200);
  EXPECT_EQ(status_of(post("", "text/plain")), 415);
  EXPECT_EQ(status_of(post("", "application/x-www-form-urlencoded")), 415);
  EXPECT_EQ(status_of(post("", "multipart/form-data; boundary=x")), 415);
  EXPECT_EQ(status_of(post("", "application/json; charset=utf-8")), 200);
  EXPECT_EQ(status_of(post("Origin: http://evil.example\r\n")), 403);
  EXPECT_EQ(status_of(post("Origin: null\r\n")), 403);
  EXPECT_EQ(status_of(post("Sec-Fetch-Site: cross-site\r\n")), 403);
  EXPECT_EQ(status_of(post("Origin: http://127.0.0.1:" + std::to_string(port_) + "\r\n")), 200);  // same origin
  const std::string cors = post("Origin: http://app.example\r\n");
  EXPECT_EQ(status_of(cors), 200);
  EXPECT_NE(cors.find("Access-Control-Allow-Origin: http://app.example"), std::string::npos);
  // DNS rebinding: a name that is not the server's.
  EXPECT_EQ(status_of(ask("GET /api/health HTTP/1.1\r\nHost: evil.example\r\n\r\n")), 421);
  EXPECT_EQ(status_of(ask("GET /api/health HTTP/1.1\r\nHost: localhost:1\r\n\r\n")), 200);
  EXPECT_EQ(status_of(ask("GET /api/health HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n")), 200);
  // The preflight of the allowed origin; a foreign one's is refused.
  const std::string pre = ask("OPTIONS /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://app.example\r\n"
                              "Access-Control-Request-Method: POST\r\n\r\n");
  EXPECT_EQ(status_of(pre), 204) << pre;
  EXPECT_NE(pre.find("Access-Control-Allow-Methods: POST"), std::string::npos);
  EXPECT_EQ(status_of(ask("OPTIONS /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n\r\n")), 403);
  // Wrong method: 405 with Allow.
  const std::string wrong = ask("PUT /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(status_of(wrong), 405);
  EXPECT_NE(wrong.find("Allow: POST, OPTIONS"), std::string::npos);
}

TEST_F(HttpTest, BodiesNeedALengthWithinTheLimit) {
  Options o;
  o.max_body_bytes = 1000;
  start(o);
  const std::string head = "POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
  EXPECT_EQ(status_of(ask(head + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")), 411);
  EXPECT_EQ(status_of(ask(head + "Content-Length: 5000\r\n\r\n")), 413);
  EXPECT_EQ(status_of(ask(head + "Content-Length: -1\r\n\r\n")), 400);
  EXPECT_EQ(status_of(ask(head + "Content-Length: 99999999999999999999\r\n\r\n")), 400);
  // Expect: 100-continue gets its interim answer, then the real one.
  Sock s(port_);
  s.send(head + "Content-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_EQ(status_of(s.recv_until("\r\n\r\n")), 100);
  s.send("{}");
  EXPECT_EQ(status_of(s.answer()), 200);
}

TEST_F(HttpTest, BodiesBeingReadAreBoundedInAll) {
  Options o;
  o.max_inflight_body_bytes = 1000;
  start(o);
  const std::string head = "POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
  Sock slow(port_);
  slow.send(head + "Content-Length: 800\r\n\r\n{\"a\":");  // holds 800 bytes while it trickles
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const std::string busy = ask(head + "Content-Length: 800\r\n\r\n" + std::string(800, ' '));
  EXPECT_EQ(status_of(busy), 503) << busy;
  EXPECT_NE(busy.find("server_busy"), std::string::npos);
  EXPECT_EQ(status_of(ask(head + "Content-Length: 2\r\n\r\n{}")), 200);  // a small one still fits
}

TEST_F(HttpTest, KeepAliveAndPipelinedRequests) {
  start();
  Sock s(port_);
  s.send("GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  EXPECT_EQ(status_of(s.answer()), 200);
  EXPECT_EQ(status_of(s.answer()), 200);
  s.send("GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  const std::string last = s.answer();
  EXPECT_EQ(status_of(last), 200);
  EXPECT_NE(last.find("Connection: close"), std::string::npos);
  EXPECT_EQ(s.recv_until(), "");  // then closed
}

TEST_F(HttpTest, BusyHandlersDoNotStopTheIoThread) {
  Options o;
  o.threads = 2;
  start(o);
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i)
    clients.emplace_back([&] {
      Sock s(port_, 10);
      s.send("GET /api/slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      if (status_of(s.answer()) == 200) ++ok;
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // The 8 slow requests queue for 2 handlers; the I/O thread still accepts and reads.
  Sock s(port_);
  EXPECT_GE(s.fd, 0);
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 8);
}

// on_thread_start runs once on each handler thread, before it handles anything, and on that thread (the
// server sets the engine's per-thread thread count there).
TEST_F(HttpTest, EachHandlerThreadRunsTheStartHookFirst) {
  static std::mutex mu;
  static std::set<std::thread::id> started, handled_on;
  static std::atomic<int> calls{0};
  static thread_local bool ran = false;
  Options o;
  o.threads = 3;
  o.on_thread_start = [] {
    ran = true;
    ++calls;
    const std::lock_guard lock(mu);
    started.insert(std::this_thread::get_id());
  };
  start(o);
  server_->route("GET", "/api/where", [](const Request&, Response& r) {
    const std::lock_guard lock(mu);
    handled_on.insert(std::this_thread::get_id());
    r.body = ran ? R"({"ran":true})" : R"({"ran":false})";
  });
  for (int i = 0; i < 12; ++i) {
    const std::string a = ask("GET /api/where HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    EXPECT_EQ(status_of(a), 200) << a;
    EXPECT_NE(a.find(R"({"ran":true})"), std::string::npos) << a;
  }
  // every handler thread runs it, once, whether or not it has handled a request yet (threads start as they may)
  for (int i = 0; i < 200 && calls.load() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(calls.load(), 3);
  const std::lock_guard lock(mu);
  EXPECT_EQ(started.size(), 3u);
  for (const std::thread::id& id : handled_on) EXPECT_EQ(started.count(id), 1u);
}

}  // namespace
}  // namespace blocklab::server::http
