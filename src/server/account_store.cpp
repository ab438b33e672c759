#include "server/account_store.h"

#include <cctype>

#include "lab/sqlite_stmt.h"

namespace blocklab::server {

using lab::Stmt;

namespace {

std::string key_of(const std::string& name) {
  std::string k = name;
  for (char& c : k) c = char(std::tolower(static_cast<unsigned char>(c)));
  return k;
}

constexpr const char* kUserColumns = "id, name, role, blocked, created_at";

User read_user(const Stmt& s, int first = 0) {
  User u;
  u.id = s.integer(first);
  u.name = s.text(first + 1);
  u.role = s.text(first + 2);
  u.blocked = s.integer(first + 3) != 0;
  u.created_at = s.text(first + 4);
  return u;
}

constexpr const char* kCommentSelect =
    "SELECT c.id, c.section, u.name, c.body, c.html, c.created_at, c.hidden, c.user_id FROM comments c "
    "JOIN users u ON u.id = c.user_id";

Comment read_comment(const Stmt& s) {
  Comment c;
  c.id = s.integer(0);
  c.section = s.text(1);
  c.author = s.text(2);
  c.body = s.text(3);
  c.html = s.text(4);
  c.created_at = s.text(5);
  c.hidden = s.integer(6) != 0;
  c.user_id = s.integer(7);
  return c;
}

}  // namespace

Result<std::unique_ptr<AccountStore>> AccountStore::open(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    const std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return Status::error(path + ": cannot open the account store: " + msg);
  }
  sqlite3_busy_timeout(db, 10000);
  sqlite3_exec(db, "PRAGMA foreign_keys=ON", nullptr, nullptr, nullptr);
  std::unique_ptr<AccountStore> store(new AccountStore(db, path));
  Stmt check(db, "SELECT count(*) FROM users");
  if (!check.ok() || check.step() != SQLITE_ROW)
    return Status::error(path + ": no accounts table (expected a store migrated to schema version 3)");
  return store;
}

AccountStore::~AccountStore() { sqlite3_close(db_); }

Status AccountStore::sql_error(const std::string& what) {
  return Status::error(path_ + ": " + what + ": " + sqlite3_errmsg(db_));
}

Result<User> AccountStore::create_user(const std::string& name, const std::string& password_hash, const std::string& role,
                                       bool* taken) {
  std::lock_guard lock(mu_);
  if (taken) *taken = false;
  Stmt s(db_,
         "INSERT INTO users (name, name_key, password_hash, role, created_at) VALUES (?, ?, ?, ?, ?) "
         "RETURNING id, name, role, blocked, created_at");
  s.bind(1, name).bind(2, key_of(name)).bind(3, password_hash).bind(4, role).bind(5, lab::now_utc());
  const int rc = s.step();
  if (rc == SQLITE_ROW) return read_user(s);
  if (sqlite3_extended_errcode(db_) == SQLITE_CONSTRAINT_UNIQUE) {
    if (taken) *taken = true;
    return Status::error("username '" + name + "': already taken");
  }
  return sql_error("create account");
}

std::optional<std::pair<User, std::string>> AccountStore::find_user(const std::string& name) {
  std::lock_guard lock(mu_);
  Stmt s(db_, (std::string("SELECT ") + kUserColumns + ", password_hash FROM users WHERE name_key = ?").c_str());
  s.bind(1, key_of(name));
  if (s.step() != SQLITE_ROW) return std::nullopt;
  return std::pair{read_user(s), s.text(5)};
}

Result<std::vector<User>> AccountStore::list_users() {
  std::lock_guard lock(mu_);
  Stmt s(db_, (std::string("SELECT ") + kUserColumns + " FROM users ORDER BY id").c_str());
  std::vector<User> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back(read_user(s));
  if (rc != SQLITE_DONE) return sql_error("list accounts");
  return out;
}

int64_t AccountStore::count_users() {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT count(*) FROM users");
  return s.step() == SQLITE_ROW ? s.integer(0) : 0;
}

namespace {
Status one_row_changed(sqlite3* db, int rc, const std::string& name, const std::string& what) {
  if (rc != SQLITE_DONE) return Status::error(what + ": " + sqlite3_errmsg(db));
  if (sqlite3_changes(db) == 0) return Status::error("user '" + name + "': no such account");
  return Status::ok();
}
}  // namespace

Status AccountStore::set_role(const std::string& name, const std::string& role) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "UPDATE users SET role = ? WHERE name_key = ?");
  s.bind(1, role).bind(2, key_of(name));
  return one_row_changed(db_, s.step(), name, "set role");
}

Status AccountStore::set_blocked(const std::string& name, bool blocked) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "UPDATE users SET blocked = ? WHERE name_key = ?");
  s.bind(1, int64_t(blocked)).bind(2, key_of(name));
  BLOCKLAB_RETURN_IF_ERROR(one_row_changed(db_, s.step(), name, "block"));
  if (blocked) {
    Stmt d(db_, "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name_key = ?)");
    d.bind(1, key_of(name));
    if (d.step() != SQLITE_DONE) return sql_error("end the sessions");
  }
  return Status::ok();
}

Status AccountStore::set_password_hash(const std::string& name, const std::string& password_hash) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "UPDATE users SET password_hash = ? WHERE name_key = ?");
  s.bind(1, password_hash).bind(2, key_of(name));
  BLOCKLAB_RETURN_IF_ERROR(one_row_changed(db_, s.step(), name, "set password"));
  Stmt d(db_, "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name_key = ?)");
  d.bind(1, key_of(name));
  return d.step() == SQLITE_DONE ? Status::ok() : sql_error("end the sessions");
}

Status AccountStore::remove_user(const std::string& name) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "DELETE FROM users WHERE name_key = ?");
  s.bind(1, key_of(name));
  return one_row_changed(db_, s.step(), name, "remove account");
}

Status AccountStore::create_session(const std::string& token_hash, int64_t user_id, double now_s) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "INSERT INTO sessions (token_hash, user_id, created_s, last_seen_s) VALUES (?, ?, ?, ?)");
  s.bind(1, token_hash).bind(2, user_id).bind(3, now_s).bind(4, now_s);
  return s.step() == SQLITE_DONE ? Status::ok() : sql_error("create session");
}

std::optional<User> AccountStore::session_user(const std::string& token_hash, double now_s, double idle_s,
                                               double absolute_s) {
  std::lock_guard lock(mu_);
  Stmt s(db_,
         "SELECT s.created_s, s.last_seen_s, u.id, u.name, u.role, u.blocked, u.created_at FROM sessions s "
         "JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?");
  s.bind(1, token_hash);
  if (s.step() != SQLITE_ROW) return std::nullopt;
  const double created = s.real(0), last = s.real(1);
  User u = read_user(s, 2);
  if (now_s - last > idle_s || now_s - created > absolute_s || u.blocked) {
    Stmt d(db_, "DELETE FROM sessions WHERE token_hash = ?");
    d.bind(1, token_hash);
    (void)d.step();
    return std::nullopt;
  }
  if (now_s - last > 60) {  // touched at most once a minute: reads stay reads
    Stmt t(db_, "UPDATE sessions SET last_seen_s = ? WHERE token_hash = ?");
    t.bind(1, now_s).bind(2, token_hash);
    (void)t.step();
  }
  return u;
}

Status AccountStore::delete_session(const std::string& token_hash) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "DELETE FROM sessions WHERE token_hash = ?");
  s.bind(1, token_hash);
  return s.step() == SQLITE_DONE ? Status::ok() : sql_error("delete session");
}

Status AccountStore::delete_expired_sessions(double now_s, double idle_s, double absolute_s) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "DELETE FROM sessions WHERE last_seen_s < ? OR created_s < ?");
  s.bind(1, now_s - idle_s).bind(2, now_s - absolute_s);
  return s.step() == SQLITE_DONE ? Status::ok() : sql_error("delete expired sessions");
}

Status AccountStore::add_class_code(const std::string& code_hash, int64_t created_by, double expires_s) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "INSERT INTO class_codes (code_hash, created_by, created_at, expires_s) VALUES (?, ?, ?, ?)");
  s.bind(1, code_hash).bind(3, lab::now_utc()).bind(4, expires_s);
  if (created_by > 0) s.bind(2, created_by);
  else s.bind_null(2);
  return s.step() == SQLITE_DONE ? Status::ok() : sql_error("add class code");
}

bool AccountStore::class_code_valid(const std::string& code_hash, double now_s) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT 1 FROM class_codes WHERE code_hash = ? AND expires_s > ?");
  s.bind(1, code_hash).bind(2, now_s);
  return s.step() == SQLITE_ROW;
}

Result<Comment> AccountStore::add_comment(const std::string& section, int64_t user_id, const std::string& body,
                                          const std::string& html, double now_s) {
  int64_t id = 0;
  {
    std::lock_guard lock(mu_);
    Stmt s(db_, "INSERT INTO comments (section, user_id, body, html, created_at, created_s) VALUES (?, ?, ?, ?, ?, ?)");
    s.bind(1, section).bind(2, user_id).bind(3, body).bind(4, html).bind(5, lab::now_utc()).bind(6, now_s);
    if (s.step() != SQLITE_DONE) return sql_error("add comment");
    id = sqlite3_last_insert_rowid(db_);
  }
  std::optional<Comment> c = comment(id);
  if (!c) return Status::error("comment " + std::to_string(id) + ": vanished after it was written");
  return *c;
}

Result<std::vector<Comment>> AccountStore::comments(const std::string& section, bool include_hidden, int64_t after_id,
                                                    int limit) {
  std::lock_guard lock(mu_);
  Stmt s(db_, (std::string(kCommentSelect) +
               " WHERE c.section = ? AND c.id > ? AND (c.hidden = 0 OR ?) ORDER BY c.id LIMIT ?").c_str());
  s.bind(1, section).bind(2, after_id).bind(3, int64_t(include_hidden)).bind(4, int64_t(limit));
  std::vector<Comment> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back(read_comment(s));
  if (rc != SQLITE_DONE) return sql_error("list comments");
  return out;
}

int64_t AccountStore::count_comments(const std::string& section, bool include_hidden) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT count(*) FROM comments WHERE section = ? AND (hidden = 0 OR ?)");
  s.bind(1, section).bind(2, int64_t(include_hidden));
  return s.step() == SQLITE_ROW ? s.integer(0) : 0;
}

std::optional<Comment> AccountStore::comment(int64_t id) {
  std::lock_guard lock(mu_);
  Stmt s(db_, (std::string(kCommentSelect) + " WHERE c.id = ?").c_str());
  s.bind(1, id);
  if (s.step() != SQLITE_ROW) return std::nullopt;
  return read_comment(s);
}

Status AccountStore::set_hidden(int64_t id, bool hidden) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "UPDATE comments SET hidden = ? WHERE id = ?");
  s.bind(1, int64_t(hidden)).bind(2, id);
  return s.step() == SQLITE_DONE ? Status::ok() : sql_error("hide comment");
}

Status AccountStore::delete_comment(int64_t id) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "DELETE FROM comments WHERE id = ?");
  s.bind(1, id);
  return s.step() == SQLITE_DONE ? Status::ok() : sql_error("delete comment");
}

int64_t AccountStore::comments_since(int64_t user_id, double since_s) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT count(*) FROM comments WHERE user_id = ? AND created_s >= ?");
  s.bind(1, user_id).bind(2, since_s);
  return s.step() == SQLITE_ROW ? s.integer(0) : 0;
}

Status AccountStore::log(const std::string& actor, const std::string& action, const std::string& target,
                         const std::string& detail) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "INSERT INTO moderation_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)");
  s.bind(1, lab::now_utc()).bind(2, actor).bind(3, action).bind(4, target).bind(5, detail);
  return s.step() == SQLITE_DONE ? Status::ok() : sql_error("log moderation");
}

Result<std::vector<AccountStore::LogEntry>> AccountStore::moderation_log(int limit) {
  std::lock_guard lock(mu_);
  Stmt s(db_, "SELECT id, at, actor, action, target, detail FROM moderation_log ORDER BY id DESC LIMIT ?");
  s.bind(1, int64_t(limit));
  std::vector<LogEntry> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW)
    out.push_back({s.integer(0), s.text(1), s.text(2), s.text(3), s.text(4), s.text(5)});
  if (rc != SQLITE_DONE) return sql_error("read the moderation log");
  return out;
}

}  // namespace blocklab::server
