// The store's database, behind one small interface with two backends: SQLite (a file path; the embedded
// default, WAL) and PostgreSQL (a postgresql:// or postgres:// URL, through libpq). The run store and the
// account store are written once against it, in the SQL both dialects share: `?` placeholders (numbered
// `$n` for PostgreSQL here), RETURNING, INSERT … ON CONFLICT … DO UPDATE. Schema text that differs
// (types, identity columns) is written with the tokens that `Database::dialect_sql` expands.
//
// Each backend keeps a small pool of connections; `with_connection` lends one for a group of statements,
// `transaction` wraps them in one transaction. Every method is safe from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "engine/status.h"

namespace blocklab::lab {

enum class Dialect { sqlite, postgres };

// A statement's parameter or a result's cell: NULL, an integer, a double (NaN is stored as NULL) or a
// text. PostgreSQL's cells arrive as text and are read as the column's type by the accessors.
using Value = std::variant<std::monostate, int64_t, double, std::string>;

// A nullable parameter: nullopt binds NULL.
inline Value nullable(std::optional<double> v) { return v ? Value(*v) : Value(); }
inline Value nullable_id(int64_t id) { return id > 0 ? Value(id) : Value(); }  // 0: no row

struct Row {
  std::vector<Value> cells;
  bool is_null(size_t col) const;
  int64_t integer(size_t col) const;  // NULL reads as 0
  double real(size_t col) const;      // NULL reads as NaN
  std::optional<double> optional_real(size_t col) const;
  std::string text(size_t col) const;  // NULL reads as ""
};

struct Rows {
  std::vector<Row> rows;
  int64_t affected = 0;  // rows an INSERT / UPDATE / DELETE changed
  bool empty() const { return rows.empty(); }
  size_t size() const { return rows.size(); }
  const Row& operator[](size_t i) const { return rows[i]; }
  auto begin() const { return rows.begin(); }
  auto end() const { return rows.end(); }
};

class Connection {
 public:
  virtual ~Connection() = default;
  // One statement with `?` parameters.
  virtual Result<Rows> query(const std::string& sql, const std::vector<Value>& params = {}) = 0;
  // Several statements without parameters (a migration).
  virtual Status exec_script(const std::string& sql) = 0;
  // Whether the last failed statement broke a UNIQUE constraint (a name already taken).
  bool unique_violation() const { return unique_violation_; }
  // Whether the connection is lost (the server went away): the pool then drops it.
  virtual bool broken() const { return false; }

 protected:
  bool unique_violation_ = false;
};

class Database {
 public:
  // A path opens (creating) an SQLite file; a postgresql:// or postgres:// URL connects to PostgreSQL.
  static Result<std::shared_ptr<Database>> open(const std::string& where);
  static bool is_url(const std::string& where);

  virtual ~Database() = default;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  Dialect dialect() const { return dialect_; }
  // The file's path, or the URL without its password: for messages.
  const std::string& name() const { return name_; }

  // fn's statements on one connection of the pool, lent until fn returns.
  Status with_connection(const std::function<Status(Connection&)>& fn);
  // fn's statements in one transaction (taking the write lock at once on SQLite): committed when fn
  // returns ok, rolled back otherwise.
  Status transaction(const std::function<Status(Connection&)>& fn);
  // One statement on any connection.
  Result<Rows> query(const std::string& sql, const std::vector<Value>& params = {});

  // The schema's version (SQLite: PRAGMA user_version; PostgreSQL: the blocklab_schema table), read
  // and written inside a migration's transaction; `lock_schema` makes concurrent openers wait there.
  virtual Result<int> schema_version(Connection& c) = 0;
  virtual Status set_schema_version(Connection& c, int version) = 0;
  virtual Status lock_schema(Connection& c) = 0;
  virtual std::string integrity_check() = 0;  // "ok" when sound
  // Inside a transaction: waits for (then holds until it ends) a lock named by `key`, so that two
  // processes' transactions on one key run one after the other (PostgreSQL: an advisory lock; SQLite:
  // nothing to do, its write transactions already run one at a time).
  virtual Status lock_key(Connection& c, const std::string& key) = 0;

  // Cross-process wake-ups (PostgreSQL: NOTIFY / LISTEN on the channel "blocklab"; SQLite, one process:
  // none — listeners poll). `listen` calls fn with each payload from its own thread and connection
  // until the returned handle is destroyed; nullptr where the backend has no notifications.
  class Listener {
   public:
    virtual ~Listener() = default;
  };
  virtual void notify(const std::string& payload) { (void)payload; }
  virtual std::unique_ptr<Listener> listen(std::function<void(const std::string&)> fn) {
    (void)fn;
    return nullptr;
  }

  // Expands the dialect tokens: {id} an auto-numbered 64-bit primary key, {int} a 64-bit integer,
  // {real} a double, {without_rowid} SQLite's clustered-table suffix, {for_update} PostgreSQL's
  // FOR UPDATE SKIP LOCKED (SQLite's write lock already makes a claim atomic).
  std::string dialect_sql(const std::string& text) const;

 protected:
  Database(Dialect d, std::string name, int pool_size) : dialect_(d), name_(std::move(name)), pool_size_(pool_size) {}
  virtual Result<std::unique_ptr<Connection>> connect() = 0;
  virtual const char* begin_sql() const = 0;

 private:
  Result<std::unique_ptr<Connection>> acquire();
  void release(std::unique_ptr<Connection> c);

  Dialect dialect_;
  std::string name_;
  int pool_size_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Connection>> idle_;
  int open_ = 0;
};

Result<std::shared_ptr<Database>> open_sqlite(const std::string& path);
Result<std::shared_ptr<Database>> open_postgres(const std::string& url);

// Now in UTC, ISO 8601 to the second: the store's timestamps.
std::string now_utc();
// Now as Unix time in seconds (the store's times: sessions, leases, heartbeats, queueing).
double wall_clock_s();

}  // namespace blocklab::lab
