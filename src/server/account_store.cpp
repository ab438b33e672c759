#include "server/account_store.h"

#include <algorithm>

#include <cctype>

namespace blocklab::server {

using lab::Connection;
using lab::Row;
using lab::Rows;
using lab::Value;

namespace {

constexpr const char* kUserColumns = "id, name, role, blocked, created_at";

User read_user(const Row& s, size_t first = 0) {
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

Comment read_comment(const Row& s) {
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

int64_t count_of(const Result<Rows>& r) { return r && !r->empty() ? r.value()[0].integer(0) : 0; }

}  // namespace

std::string AccountStore::name_key(const std::string& name) {
  std::string k = name;
  for (char& c : k) c = char(std::tolower(static_cast<unsigned char>(c)));
  return k;
}

Result<std::unique_ptr<AccountStore>> AccountStore::open(const std::string& where) {
  Result<std::shared_ptr<lab::Database>> db = lab::Database::open(where);
  if (!db) return db.status();
  return open(std::move(db.value()));
}

Result<std::unique_ptr<AccountStore>> AccountStore::open(std::shared_ptr<lab::Database> db) {
  if (!db->query("SELECT count(*) FROM users"))
    return Status::error(db->name() + ": no accounts table (expected a store migrated to schema version 3 or later)");
  return std::unique_ptr<AccountStore>(new AccountStore(std::move(db)));
}

// ---- users ------------------------------------------------------------------------------------------

Result<User> AccountStore::create_user(const std::string& name, const std::string& password_hash, const std::string& role,
                                       bool* taken) {
  if (taken) *taken = false;
  Result<User> out = Status::error("unset");
  Status st = db_->with_connection([&](Connection& c) -> Status {
    Result<Rows> r = c.query(
        "INSERT INTO users (name, name_key, password_hash, role, created_at) VALUES (?, ?, ?, ?, ?) "
        "RETURNING id, name, role, blocked, created_at",
        {name, name_key(name), password_hash, role, lab::now_utc()});
    if (!r) {
      if (c.unique_violation()) {
        if (taken) *taken = true;
        return Status::error("username '" + name + "': already taken");
      }
      return r.status().with_context("create account");
    }
    if (r->empty()) return Status::error(db_->name() + ": create account: no row came back");
    out = read_user(r.value()[0]);
    return Status::ok();
  });
  if (!st) return st;
  return out;
}

std::optional<std::pair<User, std::string>> AccountStore::find_user(const std::string& name) {
  Result<Rows> r = db_->query(std::string("SELECT ") + kUserColumns + ", password_hash FROM users WHERE name_key = ?",
                              {name_key(name)});
  if (!r || r->empty()) return std::nullopt;
  return std::pair{read_user(r.value()[0]), r.value()[0].text(5)};
}

Result<std::vector<User>> AccountStore::list_users() {
  Result<Rows> r = db_->query(std::string("SELECT ") + kUserColumns + " FROM users ORDER BY id");
  if (!r) return r.status().with_context("list accounts");
  std::vector<User> out;
  for (const Row& row : r.value()) out.push_back(read_user(row));
  return out;
}

int64_t AccountStore::count_users() { return count_of(db_->query("SELECT count(*) FROM users")); }

// One UPDATE or DELETE of the account of that name; "no such account" when it changed nothing; its
// sessions ended in the same transaction when asked.
Status AccountStore::set_user(const std::string& name, const std::string& sql, const std::vector<Value>& params,
                              const std::string& what, bool end_sessions) {
  return db_->transaction([&](Connection& c) -> Status {
    if (end_sessions) {
      Result<Rows> d =
          c.query("DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name_key = ?)", {name_key(name)});
      if (!d) return d.status().with_context("end the sessions");
    }
    Result<Rows> r = c.query(sql, params);
    if (!r) return r.status().with_context(what);
    if (r->affected == 0) return Status::error("user '" + name + "': no such account");
    return Status::ok();
  });
}

Status AccountStore::set_role(const std::string& name, const std::string& role) {
  return set_user(name, "UPDATE users SET role = ? WHERE name_key = ?", {role, name_key(name)}, "set role", false);
}

Status AccountStore::set_blocked(const std::string& name, bool blocked) {
  return set_user(name, "UPDATE users SET blocked = ? WHERE name_key = ?", {int64_t(blocked), name_key(name)}, "block",
                  blocked);
}

Status AccountStore::set_password_hash(const std::string& name, const std::string& password_hash) {
  return set_user(name, "UPDATE users SET password_hash = ? WHERE name_key = ?", {password_hash, name_key(name)},
                  "set password", true);
}

Status AccountStore::remove_user(const std::string& name) {
  return set_user(name, "DELETE FROM users WHERE name_key = ?", {name_key(name)}, "remove account", false);
}

// ---- sessions ---------------------------------------------------------------------------------------

Status AccountStore::create_session(const std::string& token_hash, int64_t user_id, double now_s) {
  return db_->query("INSERT INTO sessions (token_hash, user_id, created_s, last_seen_s) VALUES (?, ?, ?, ?)",
                    {token_hash, user_id, now_s, now_s})
      .status()
      .with_context("create session");
}

std::optional<User> AccountStore::session_user(const std::string& token_hash, double now_s, double idle_s,
                                               double absolute_s) {
  std::optional<User> out;
  (void)db_->with_connection([&](Connection& c) -> Status {
    Result<Rows> r = c.query(
        "SELECT s.created_s, s.last_seen_s, u.id, u.name, u.role, u.blocked, u.created_at FROM sessions s "
        "JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?",
        {token_hash});
    if (!r || r->empty()) return r.status();
    const Row& row = r.value()[0];
    const double created = row.real(0), last = row.real(1);
    User u = read_user(row, 2);
    if (now_s - last > idle_s || now_s - created > absolute_s || u.blocked)
      return c.query("DELETE FROM sessions WHERE token_hash = ?", {token_hash}).status();
    if (now_s - last > 60)  // touched at most once a minute: reads stay reads
      (void)c.query("UPDATE sessions SET last_seen_s = ? WHERE token_hash = ?", {now_s, token_hash});
    out = std::move(u);
    return Status::ok();
  });
  return out;
}

Status AccountStore::delete_session(const std::string& token_hash) {
  return db_->query("DELETE FROM sessions WHERE token_hash = ?", {token_hash}).status().with_context("delete session");
}

Status AccountStore::delete_expired_sessions(double now_s, double idle_s, double absolute_s) {
  return db_->query("DELETE FROM sessions WHERE last_seen_s < ? OR created_s < ?", {now_s - idle_s, now_s - absolute_s})
      .status()
      .with_context("delete expired sessions");
}

// ---- class codes ------------------------------------------------------------------------------------

Status AccountStore::add_class_code(const std::string& code_hash, int64_t created_by, double expires_s) {
  return db_->query("INSERT INTO class_codes (code_hash, created_by, created_at, expires_s) VALUES (?, ?, ?, ?)",
                    {code_hash, lab::nullable_id(created_by), lab::now_utc(), expires_s})
      .status()
      .with_context("add class code");
}

bool AccountStore::class_code_valid(const std::string& code_hash, double now_s) {
  Result<Rows> r = db_->query("SELECT 1 FROM class_codes WHERE code_hash = ? AND expires_s > ?", {code_hash, now_s});
  return r && !r->empty();
}

// ---- comments ---------------------------------------------------------------------------------------

Result<Comment> AccountStore::add_comment(const std::string& section, int64_t user_id, const std::string& body,
                                          const std::string& html, double now_s) {
  Result<Rows> r = db_->query(
      "INSERT INTO comments (section, user_id, body, html, created_at, created_s) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
      {section, user_id, body, html, lab::now_utc(), now_s});
  if (!r) return r.status().with_context("add comment");
  const int64_t id = r->empty() ? 0 : r.value()[0].integer(0);
  std::optional<Comment> c = comment(id);
  if (!c) return Status::error("comment " + std::to_string(id) + ": vanished after it was written");
  return *c;
}

Result<std::vector<Comment>> AccountStore::comments(const std::string& section, bool include_hidden, int64_t after_id,
                                                    int limit) {
  Result<Rows> r = db_->query(std::string(kCommentSelect) +
                                  " WHERE c.section = ? AND c.id > ? AND (c.hidden = 0 OR ? = 1) ORDER BY c.id LIMIT ?",
                              {section, after_id, int64_t(include_hidden), int64_t(limit)});
  if (!r) return r.status().with_context("list comments");
  std::vector<Comment> out;
  for (const Row& row : r.value()) out.push_back(read_comment(row));
  return out;
}

int64_t AccountStore::count_comments(const std::string& section, bool include_hidden) {
  return count_of(db_->query("SELECT count(*) FROM comments WHERE section = ? AND (hidden = 0 OR ? = 1)",
                             {section, int64_t(include_hidden)}));
}

std::optional<Comment> AccountStore::comment(int64_t id) {
  Result<Rows> r = db_->query(std::string(kCommentSelect) + " WHERE c.id = ?", {id});
  if (!r || r->empty()) return std::nullopt;
  return read_comment(r.value()[0]);
}

Status AccountStore::set_hidden(int64_t id, bool hidden) {
  return db_->query("UPDATE comments SET hidden = ? WHERE id = ?", {int64_t(hidden), id}).status().with_context("hide comment");
}

Status AccountStore::delete_comment(int64_t id) {
  return db_->query("DELETE FROM comments WHERE id = ?", {id}).status().with_context("delete comment");
}

// The first column of a query's rows, as numbers (the per-minute limits' times); none when it fails.
std::vector<double> AccountStore::times(const std::string& sql, const std::vector<Value>& params) {
  std::vector<double> out;
  Result<Rows> r = db_->query(sql, params);
  if (r)
    for (const Row& row : r.value()) out.push_back(row.real(0));
  return out;
}

std::vector<double> AccountStore::comment_times_since(int64_t user_id, double since_s) {
  return times("SELECT created_s FROM comments WHERE user_id = ? AND created_s >= ? ORDER BY created_s", {user_id, since_s});
}

// ---- the assistant's conversations ------------------------------------------------------------------

Status AccountStore::add_assistant_message(int64_t user_id, const std::string& role, const std::string& page,
                                           const std::string& text, const std::string& payload, double now_s, int keep) {
  return db_->transaction([&](Connection& c) -> Status {
    BLOCKLAB_RETURN_IF_ERROR(c.query("INSERT INTO assistant_messages (user_id, created_s, created_at, role, page, text, payload) "
                                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                     {user_id, now_s, lab::now_utc(), role, page, text, payload})
                                 .status());
    return c.query("DELETE FROM assistant_messages WHERE user_id = ? AND id NOT IN "
                   "(SELECT id FROM assistant_messages WHERE user_id = ? ORDER BY id DESC LIMIT ?)",
                   {user_id, user_id, int64_t(keep)})
        .status();
  }).with_context("add assistant message");
}

Result<std::vector<AccountStore::AssistantMessage>> AccountStore::assistant_messages(int64_t user_id, int limit) {
  Result<Rows> r = db_->query("SELECT id, role, page, text, payload, created_at, created_s FROM assistant_messages "
                              "WHERE user_id = ? ORDER BY id DESC LIMIT ?",
                              {user_id, int64_t(limit)});
  if (!r) return r.status().with_context("list assistant messages");
  std::vector<AssistantMessage> out;
  for (const Row& row : r.value())
    out.push_back({row.integer(0), row.text(1), row.text(2), row.text(3), row.text(4), row.text(5), row.real(6)});
  std::reverse(out.begin(), out.end());
  return out;
}

Status AccountStore::clear_assistant_messages(int64_t user_id) {
  return db_->query("DELETE FROM assistant_messages WHERE user_id = ?", {user_id}).status().with_context("clear assistant messages");
}

std::vector<double> AccountStore::assistant_question_times_since(int64_t user_id, double since_s) {
  return times("SELECT created_s FROM assistant_messages WHERE user_id = ? AND role = 'user' AND created_s >= ? ORDER BY created_s",
               {user_id, since_s});
}

// ---- sign-in failures -------------------------------------------------------------------------------

AccountStore::Failures AccountStore::signin_failures(const std::string& key) {
  Result<Rows> r = db_->query("SELECT failures, last_s FROM signin_failures WHERE key = ?", {key});
  if (!r || r->empty()) return {};
  return {r.value()[0].integer(0), r.value()[0].real(1)};
}

Status AccountStore::record_signin_failure(const std::string& key, double now_s, double window_s) {
  return db_->query("INSERT INTO signin_failures (key, failures, last_s) VALUES (?, 1, ?) ON CONFLICT (key) DO UPDATE SET "
                    "failures = CASE WHEN ? - signin_failures.last_s > ? THEN 1 ELSE signin_failures.failures + 1 END, "
                    "last_s = excluded.last_s",
                    {key, now_s, now_s, window_s})
      .status()
      .with_context("count a failed sign-in");
}

Status AccountStore::clear_signin_failures(const std::string& key) {
  return db_->query("DELETE FROM signin_failures WHERE key = ?", {key}).status();
}

Status AccountStore::forget_signin_failures_before(double before_s) {
  return db_->query("DELETE FROM signin_failures WHERE last_s < ?", {before_s}).status();
}

// ---- moderation log ---------------------------------------------------------------------------------

Status AccountStore::log(const std::string& actor, const std::string& action, const std::string& target,
                         const std::string& detail) {
  return db_->query("INSERT INTO moderation_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                    {lab::now_utc(), actor, action, target, detail})
      .status()
      .with_context("log moderation");
}

Result<std::vector<AccountStore::LogEntry>> AccountStore::moderation_log(int limit) {
  Result<Rows> r =
      db_->query("SELECT id, at, actor, action, target, detail FROM moderation_log ORDER BY id DESC LIMIT ?", {int64_t(limit)});
  if (!r) return r.status().with_context("read the moderation log");
  std::vector<LogEntry> out;
  for (const Row& s : r.value()) out.push_back({s.integer(0), s.text(1), s.text(2), s.text(3), s.text(4), s.text(5)});
  return out;
}

}  // namespace blocklab::server
