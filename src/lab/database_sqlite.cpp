// The SQLite backend: one file, WAL (readers never block the writer), foreign keys on. SQLite lets one
// writer in at a time; within the process the writers queue on a mutex (a statement that writes, or a whole
// transaction), so that none waits in SQLite's busy handler, which sleeps in steps of milliseconds; the
// busy timeout is left for writers from other processes (the CLI beside a server).
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>
#include <thread>

#include "lab/database.h"

namespace blocklab::lab {

namespace {

class SqliteConnection final : public Connection {
 public:
  SqliteConnection(sqlite3* db, std::string path, std::mutex* writer) : db_(db), path_(std::move(path)), writer_(writer) {}
  ~SqliteConnection() override {
    if (in_transaction_) writer_->unlock();
    sqlite3_close(db_);
  }

  Result<Rows> query(const std::string& sql, const std::vector<Value>& params) override {
    unique_violation_ = false;
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), int(sql.size()), &s, nullptr) != SQLITE_OK) return error();
    struct Finalize {
      sqlite3_stmt* s;
      ~Finalize() { sqlite3_finalize(s); }
    } finalize{s};
    std::unique_lock<std::mutex> write;
    if (!in_transaction_ && !sqlite3_stmt_readonly(s)) write = std::unique_lock(*writer_);
    for (size_t i = 0; i < params.size(); ++i) {
      const int at = int(i) + 1;
      const Value& v = params[i];
      if (const auto* n = std::get_if<int64_t>(&v)) sqlite3_bind_int64(s, at, *n);
      else if (const auto* d = std::get_if<double>(&v); d && !std::isnan(*d)) sqlite3_bind_double(s, at, *d);
      else if (const auto* t = std::get_if<std::string>(&v)) sqlite3_bind_text(s, at, t->data(), int(t->size()), SQLITE_TRANSIENT);
      else sqlite3_bind_null(s, at);
    }
    Rows out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      Row row;
      const int n = sqlite3_column_count(s);
      row.cells.reserve(size_t(n));
      for (int c = 0; c < n; ++c) {
        switch (sqlite3_column_type(s, c)) {
          case SQLITE_INTEGER: row.cells.emplace_back(int64_t(sqlite3_column_int64(s, c))); break;
          case SQLITE_FLOAT: row.cells.emplace_back(sqlite3_column_double(s, c)); break;
          case SQLITE_NULL: row.cells.emplace_back(); break;
          default: {
            const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, c));
            row.cells.emplace_back(std::string(p ? p : "", size_t(sqlite3_column_bytes(s, c))));
          }
        }
      }
      out.rows.push_back(std::move(row));
    }
    if (rc != SQLITE_DONE) return error();
    out.affected = sqlite3_changes(db_);
    return out;
  }

  Status exec_script(const std::string& sql) override {
    unique_violation_ = false;
    // A transaction holds the process's write lock from BEGIN to COMMIT or ROLLBACK.
    const bool begin = sql.rfind("BEGIN", 0) == 0, end = sql == "COMMIT" || sql == "ROLLBACK";
    if (begin && !in_transaction_) {
      writer_->lock();
      in_transaction_ = true;
    }
    struct EndTransaction {
      SqliteConnection* c;
      bool end;
      ~EndTransaction() {
        if (end && c->in_transaction_ && sqlite3_get_autocommit(c->db_)) {
          c->in_transaction_ = false;
          c->writer_->unlock();
        }
      }
    } finish{this, end};
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      if (begin && sqlite3_get_autocommit(db_)) {  // BEGIN failed: no transaction to hold the lock for
        in_transaction_ = false;
        writer_->unlock();
      }
      const std::string msg = err ? err : sqlite3_errmsg(db_);
      sqlite3_free(err);
      return Status::error(path_ + ": " + msg);
    }
    return Status::ok();
  }

  sqlite3* db() { return db_; }

 private:
  Status error() {
    unique_violation_ = sqlite3_extended_errcode(db_) == SQLITE_CONSTRAINT_UNIQUE ||
                        sqlite3_extended_errcode(db_) == SQLITE_CONSTRAINT_PRIMARYKEY;
    return Status::error(path_ + ": " + sqlite3_errmsg(db_));
  }
  sqlite3* db_;
  std::string path_;
  std::mutex* writer_;
  bool in_transaction_ = false;
};

class SqliteDatabase final : public Database {
 public:
  explicit SqliteDatabase(std::string path) : Database(Dialect::sqlite, std::move(path), 4) {}

  Result<int> schema_version(Connection& c) override {
    Result<Rows> r = c.query("PRAGMA user_version");
    if (!r) return r.status();
    return r->empty() ? 0 : int(r.value()[0].integer(0));
  }
  Status set_schema_version(Connection& c, int version) override {
    return c.exec_script("PRAGMA user_version = " + std::to_string(version));
  }
  Status lock_schema(Connection&) override { return Status::ok(); }  // BEGIN IMMEDIATE holds the file's write lock
  Status lock_key(Connection&, const std::string&) override { return Status::ok(); }
  std::string integrity_check() override {
    Result<Rows> r = query("PRAGMA integrity_check");
    if (!r) return r.status().message();
    return r->empty() ? "no answer" : r.value()[0].text(0);
  }

 protected:
  const char* begin_sql() const override { return "BEGIN IMMEDIATE"; }
  std::mutex writer_;  // this process's writers, one at a time
  Result<std::unique_ptr<Connection>> connect() override {
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(name().c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                   nullptr);
    if (rc != SQLITE_OK) {
      const std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
      sqlite3_close(db);
      return Status::error(name() + ": cannot open the store: " + msg);
    }
    auto conn = std::make_unique<SqliteConnection>(db, name(), &writer_);
    sqlite3_busy_timeout(db, 10000);
    // WAL: readers never block the writer; synchronous=NORMAL keeps every committed transaction through a
    // process crash (only an OS crash or power loss could lose the last ones).
    // Switching a new file to WAL takes a lock that SQLite's busy handler does not wait for: when several
    // processes or threads open a new store at once, one may be told "database is locked" at once. It is
    // retried for up to the busy timeout, as a write would wait.
    for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON"}) {
      Status st = conn->exec_script(pragma);
      for (int wait_ms = 1, waited = 0; !st && sqlite3_errcode(db) == SQLITE_BUSY && waited < 10000;
           waited += wait_ms, wait_ms = std::min(2 * wait_ms, 100)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
        st = conn->exec_script(pragma);
      }
      if (!st) return Status::error(name() + ": not a usable store (" + st.message() + ")");
    }
    return std::unique_ptr<Connection>(std::move(conn));
  }
};

}  // namespace

Result<std::shared_ptr<Database>> open_sqlite(const std::string& path) {
  auto db = std::make_shared<SqliteDatabase>(path);
  // Open one connection now, so that a bad path or a file that is not a database is named at once.
  Status st = db->with_connection([](Connection&) { return Status::ok(); });
  if (!st) return st;
  return std::shared_ptr<Database>(std::move(db));
}

}  // namespace blocklab::lab
