// SQLite helpers shared by the stores on one database file (the run store, the account store): a
// prepared statement that binds by position and reads by column, and the store's timestamps.
#pragma once

#include <sqlite3.h>

#include <cmath>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>

namespace blocklab::lab {

inline std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// A prepared statement, finalised on scope exit. Binds by position (1-based), reads by column.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return rc_ == SQLITE_OK; }
  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& bind(int i, double v) {  // NaN is stored as NULL and read back as NaN
    if (std::isnan(v)) sqlite3_bind_null(s_, i);
    else sqlite3_bind_double(s_, i, v);
    return *this;
  }
  Stmt& bind(int i, std::optional<double> v) { return v ? bind(i, *v) : (sqlite3_bind_null(s_, i), *this); }
  Stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), int(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind_null(int i) {
    sqlite3_bind_null(s_, i);
    return *this;
  }
  int step() { return sqlite3_step(s_); }  // SQLITE_ROW, SQLITE_DONE or an error
  int64_t integer(int col) const { return sqlite3_column_int64(s_, col); }
  double real(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL ? NAN : sqlite3_column_double(s_, col); }
  std::optional<double> optional_real(int col) const {
    if (sqlite3_column_type(s_, col) == SQLITE_NULL) return std::nullopt;
    return sqlite3_column_double(s_, col);
  }
  std::string text(int col) const {
    const unsigned char* p = sqlite3_column_text(s_, col);
    return p ? reinterpret_cast<const char*>(p) : "";
  }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_;
};

}  // namespace blocklab::lab
