// The PostgreSQL backend, through libpq: a pool of connections to one database, parameters sent apart
// from the SQL text (never spliced into it), results read as text. Several blocklab processes may share
// the database; migrations take an advisory lock so that two starting at once migrate once.
#include <libpq-fe.h>

#include <poll.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <thread>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "lab/database.h"

namespace blocklab::lab {

namespace {

// The key of the advisory lock that migrations hold ("blocklab" in ASCII, as a number).
constexpr const char* kSchemaLock = "SELECT pg_advisory_xact_lock(7092165448159043938)";

// `?` placeholders as PostgreSQL's `$1, $2, …` (outside quoted text and names).
std::string numbered_placeholders(const std::string& sql) {
  std::string out;
  out.reserve(sql.size() + 16);
  int n = 0;
  char quote = 0;
  for (char c : sql) {
    if (quote) {
      if (c == quote) quote = 0;
      out += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      out += c;
    } else if (c == '?') {
      out += '$' + std::to_string(++n);
    } else {
      out += c;
    }
  }
  return out;
}

std::string one_line(const char* message) {
  std::string m = message ? message : "unknown error";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  std::string out;
  for (char c : m) {
    if (c == '\t') continue;
    out += c == '\n' ? ' ' : c;
  }
  return out;
}

// The URL without its password, for messages and logs.
std::string redacted(const std::string& url) {
  std::string out = url;
  const size_t scheme = out.find("://");
  const size_t at = out.find('@', scheme == std::string::npos ? 0 : scheme + 3);
  if (scheme != std::string::npos && at != std::string::npos) {
    const size_t colon = out.find(':', scheme + 3);
    if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
  }
  for (size_t p = out.find("password="); p != std::string::npos; p = out.find("password=", p + 9)) {
    const size_t end = out.find('&', p);
    out.replace(p + 9, (end == std::string::npos ? out.size() : end) - p - 9, "***");
  }
  return out;
}

class PgConnection final : public Connection {
 public:
  PgConnection(PGconn* c, std::string name) : c_(c), name_(std::move(name)) {}
  ~PgConnection() override {
    if (c_) PQfinish(c_);
  }

  Result<Rows> query(const std::string& sql, const std::vector<Value>& params) override {
    unique_violation_ = false;
    const std::string text = numbered_placeholders(sql);
    std::vector<std::string> storage(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    std::vector<Oid> types(params.size(), 0);
    for (size_t i = 0; i < params.size(); ++i) {
      const Value& v = params[i];
      if (const auto* n = std::get_if<int64_t>(&v)) {
        storage[i] = std::to_string(*n);
        types[i] = 20;  // int8
      } else if (const auto* d = std::get_if<double>(&v); d && !std::isnan(*d)) {
        if (std::isinf(*d)) {
          storage[i] = *d > 0 ? "Infinity" : "-Infinity";
        } else {
          char buf[32];
          storage[i].assign(buf, std::to_chars(buf, buf + sizeof buf, *d).ptr);  // shortest round trip
        }
        types[i] = 701;  // float8
      } else if (const auto* t = std::get_if<std::string>(&v)) {
        storage[i] = *t;
        types[i] = 25;  // text
      } else {
        continue;  // NULL
      }
      values[i] = storage[i].c_str();
    }
    PGresult* res = PQexecParams(c_, text.c_str(), int(params.size()), types.data(), values.data(), nullptr, nullptr, 0);
    struct Clear {
      PGresult* r;
      ~Clear() { PQclear(r); }
    } clear{res};
    const ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) return error(res);
    Rows out;
    const int rows = PQntuples(res), cols = PQnfields(res);
    out.rows.resize(size_t(rows));
    for (int r = 0; r < rows; ++r) {
      Row& row = out.rows[size_t(r)];
      row.cells.reserve(size_t(cols));
      for (int c = 0; c < cols; ++c) {
        if (PQgetisnull(res, r, c)) row.cells.emplace_back();
        else row.cells.emplace_back(std::string(PQgetvalue(res, r, c), size_t(PQgetlength(res, r, c))));
      }
    }
    out.affected = std::strtoll(PQcmdTuples(res), nullptr, 10);
    return out;
  }

  Status exec_script(const std::string& sql) override {
    unique_violation_ = false;
    PGresult* res = PQexec(c_, sql.c_str());
    const ExecStatusType st = PQresultStatus(res);
    Status out = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? Status::ok() : error(res);
    PQclear(res);
    return out;
  }

  bool broken() const override { return PQstatus(c_) != CONNECTION_OK; }
  PGconn* release() {
    PGconn* c = c_;
    c_ = nullptr;
    return c;
  }

 private:
  Status error(PGresult* res) {
    const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
    unique_violation_ = state && std::strcmp(state, "23505") == 0;
    const char* msg = res ? PQresultErrorMessage(res) : nullptr;
    return Status::error(name_ + ": " + one_line(msg && *msg ? msg : PQerrorMessage(c_)));
  }
  PGconn* c_;
  std::string name_;
};

class PgDatabase;

// LISTEN blocklab on a connection of its own, in a thread of its own; after a lost connection it
// reconnects and calls fn("") once, since notifications sent meanwhile are lost.
class PgListener final : public Database::Listener {
 public:
  PgListener(PgDatabase* db, std::function<void(const std::string&)> fn);
  ~PgListener() override {
    stop_ = true;
    thread_.join();
  }

 private:
  void loop();
  PgDatabase* db_;
  std::function<void(const std::string&)> fn_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class PgDatabase final : public Database {
 public:
  PgDatabase(std::string url, std::string name) : Database(Dialect::postgres, std::move(name), 8), url_(std::move(url)) {}

  Result<int> schema_version(Connection& c) override {
    Result<Rows> t = c.query("SELECT to_regclass('blocklab_schema') IS NOT NULL");
    if (!t) return t.status();
    if (t->empty() || t.value()[0].text(0) != "t") return 0;
    Result<Rows> r = c.query("SELECT max(version) FROM blocklab_schema");
    if (!r) return r.status();
    return r->empty() ? 0 : int(r.value()[0].integer(0));
  }
  Status set_schema_version(Connection& c, int version) override {
    BLOCKLAB_RETURN_IF_ERROR(c.exec_script("DELETE FROM blocklab_schema"));
    return c.query("INSERT INTO blocklab_schema (version) VALUES (?)", {int64_t(version)}).status();
  }
  Status lock_schema(Connection& c) override {
    BLOCKLAB_RETURN_IF_ERROR(c.exec_script(kSchemaLock));
    return c.exec_script("CREATE TABLE IF NOT EXISTS blocklab_schema (version BIGINT NOT NULL)");
  }
  Status lock_key(Connection& c, const std::string& key) override {
    return c.query("SELECT pg_advisory_xact_lock(hashtext(?))", {key}).status();
  }
  void notify(const std::string& payload) override { (void)query("SELECT pg_notify('blocklab', ?)", {payload}); }
  std::unique_ptr<Listener> listen(std::function<void(const std::string&)> fn) override {
    return std::make_unique<PgListener>(this, std::move(fn));
  }
  Result<PGconn*> raw_connection() {
    Result<std::unique_ptr<Connection>> c = connect();
    if (!c) return c.status();
    return static_cast<PgConnection*>(c.value().get())->release();
  }

  std::string integrity_check() override {
    // PostgreSQL checks its own pages; what can be asked is whether the database answers.
    Result<Rows> r = query("SELECT 1");
    return r ? "ok" : r.status().message();
  }

 protected:
  const char* begin_sql() const override { return "BEGIN"; }
  Result<std::unique_ptr<Connection>> connect() override {
    // The URL's own settings win over these defaults (libpq applies an expanded dbname after them).
    const char* keys[] = {"connect_timeout", "application_name", "dbname", nullptr};
    const char* values[] = {"10", "blocklab", url_.c_str(), nullptr};
    PGconn* c = PQconnectdbParams(keys, values, 1);
    if (!c) return Status::error(name() + ": cannot connect: out of memory");
    if (PQstatus(c) != CONNECTION_OK) {
      std::string msg = one_line(PQerrorMessage(c));
      // libpq may quote the URL it could not read, password and all: the message shows it redacted.
      for (size_t at = msg.find(url_); at != std::string::npos; at = msg.find(url_, at + name().size()))
        msg.replace(at, url_.size(), name());
      PQfinish(c);
      return Status::error(name() + ": cannot connect to PostgreSQL: " + msg);
    }
    PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);  // "already exists" notices are not errors
    auto conn = std::make_unique<PgConnection>(c, name());
    // Text results in one form whatever the server's settings: UTC, ISO dates, shortest exact doubles.
    BLOCKLAB_RETURN_IF_ERROR(conn->exec_script("SET TIME ZONE 'UTC'; SET extra_float_digits = 1"));
    return std::unique_ptr<Connection>(std::move(conn));
  }

 private:
  std::string url_;
};

PgListener::PgListener(PgDatabase* db, std::function<void(const std::string&)> fn)
    : db_(db), fn_(std::move(fn)), thread_([this] { loop(); }) {}

void PgListener::loop() {
  bool first = true;
  while (!stop_) {
    Result<PGconn*> c = db_->raw_connection();
    if (!c) {
      for (int i = 0; i < 10 && !stop_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    PGconn* conn = c.value();
    PGresult* r = PQexec(conn, "LISTEN blocklab");
    const bool listening = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (listening && !first) fn_("");  // what was sent while no one listened
    first = false;
    while (listening && !stop_ && PQstatus(conn) == CONNECTION_OK) {
      pollfd p{PQsocket(conn), POLLIN, 0};
      if (::poll(&p, 1, 200) > 0 && !PQconsumeInput(conn)) break;
      while (PGnotify* n = PQnotifies(conn)) {
        fn_(n->extra ? n->extra : "");
        PQfreemem(n);
      }
    }
    PQfinish(conn);
  }
}

}  // namespace

Result<std::shared_ptr<Database>> open_postgres(const std::string& url) {
  auto db = std::make_shared<PgDatabase>(url, redacted(url));
  Status st = db->with_connection([](Connection&) { return Status::ok(); });
  if (!st) return st;
  return std::shared_ptr<Database>(std::move(db));
}

}  // namespace blocklab::lab
