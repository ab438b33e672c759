// The real server in-process for the HTTP tests: a `Server` on a free loopback port over a store (an
// SQLite file, or a PostgreSQL database from test_postgres.h), and `Browser`, a client with its own
// cookie jar and CSRF token. Answers are checked against docs/openapi.json with `conforms`.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "openapi_check.h"
#include "server/server.h"
#include "test_postgres.h"

namespace blocklab::testing {

using nlohmann::json;

// One client: its own cookie jar (the session cookie), and the CSRF token from the last sign-in. It
// plays `address` through X-Forwarded-For (the test server trusts 127.0.0.1 as its proxy).
struct Browser {
  std::unique_ptr<httplib::Client> c;
  std::string cookie, csrf, address = "127.0.0.1";
  explicit Browser(int port) : c(std::make_unique<httplib::Client>("127.0.0.1", port)) { c->set_read_timeout(30, 0); }
  httplib::Headers headers(bool with_csrf) const {
    httplib::Headers h = {{"X-Forwarded-For", address}};
    if (!cookie.empty()) h.emplace("Cookie", "blocklab_session=" + cookie);
    if (with_csrf && !csrf.empty()) h.emplace("X-CSRF-Token", csrf);
    return h;
  }
  httplib::Result post(const std::string& path, const json& body, bool with_csrf = true, httplib::Headers extra = {}) {
    httplib::Headers h = headers(with_csrf);
    h.insert(extra.begin(), extra.end());
    httplib::Result r = c->Post(path, h, body.dump(), "application/json");
    take_cookie(r);
    return r;
  }
  httplib::Result get(const std::string& path) { return c->Get(path, headers(false)); }
  httplib::Result del(const std::string& path, bool with_csrf = true) { return c->Delete(path, headers(with_csrf)); }
  void take_cookie(const httplib::Result& r) {
    if (!r) return;
    const std::string set = r->get_header_value("Set-Cookie");
    if (set.rfind("blocklab_session=", 0) == 0) cookie = set.substr(17, set.find(';') - 17);
    const json j = json::parse(r->body, nullptr, false);
    if (j.is_object() && j.contains("csrf_token")) csrf = j["csrf_token"];
  }
};

inline int status(const httplib::Result& r) { return r ? r->status : 0; }

inline std::string code(const httplib::Result& r) {
  const json j = r ? json::parse(r->body, nullptr, false) : json();
  return j.is_object() && j.contains("error") ? j["error"]["code"].get<std::string>() : "";
}

// Checks an answer against docs/openapi.json (its error answers against the Error schema).
inline void conforms(const httplib::Result& r, const std::string& path_template, const std::string& method) {
  static const OpenApi api(std::string(BLOCKLAB_SOURCE_DIR) + "/docs/openapi.json");
  ASSERT_TRUE(r);
  if (r->status == 204) return;
  const json j = json::parse(r->body, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r->body;
  const json& schema = r->status >= 400 ? api.doc()["components"]["schemas"]["Error"] : api.response_schema(path_template, method, r->status);
  for (const std::string& p : api.check(j, schema)) ADD_FAILURE() << method << " " << path_template << ": " << p;
}

// A test's server over its own store (the test's parameter: "sqlite" or "postgres"), in a fresh folder.
class ServerTestBase : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (char& c : name)
      if (c == '/') c = '_';
    dir_ = std::filesystem::temp_directory_path() / ("blocklab_srv_" + std::to_string(::getpid()) + "_" + name);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    db_ = GetParam() == "postgres" ? fresh_postgres_database() : (dir_ / "store.db").string();
    ASSERT_FALSE(db_.empty());
  }
  void TearDown() override {
    stop();
    std::filesystem::remove_all(dir_);
  }
  // Starts the server with `o` (its port, store, folders and proxy set here); models from `models_dir`
  // (default: none).
  void start(server::ServerOptions o = {}, const std::string& models_dir = "") {
    o.port = 0;
    o.db = db_;
    o.models_dir = models_dir.empty() ? (dir_ / "no-models").string() : models_dir;
    o.uploads_dir = (dir_ / "uploads").string();
    o.web_dir = (dir_ / "no-web").string();
    o.access_log = false;
    o.trusted_proxy = "127.0.0.1";  // the tests play several addresses through X-Forwarded-For
    server_ = server::Server::create(o).value();
    port_ = server_->bind().value();
    thread_ = std::thread([this] { server_->serve(); });
  }
  void stop() {
    if (!server_) return;
    server_->stop();
    thread_.join();
    server_.reset();
  }
  Browser signed_up(const std::string& name, const std::string& password = "correct horse") {
    Browser b(port_);
    EXPECT_EQ(status(b.post("/api/auth/register", {{"username", name}, {"password", password}})), 201);
    return b;
  }

  std::filesystem::path dir_;
  std::string db_;
  std::unique_ptr<server::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace blocklab::testing
