// Accounts, sessions, class codes, comments and the moderation log, in the server's store file beside
// the runs (the run store's schema, version 3: src/lab/run_store.cpp). Holds no secret in clear:
// passwords as argon2id strings, session tokens and class codes as BLAKE2b hashes (server/auth.h).
// Every method is safe from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/status.h"

struct sqlite3;

namespace blocklab::server {

struct User {
  int64_t id = 0;
  std::string name, role;  // role: student | teacher
  bool blocked = false;
  std::string created_at;
};

struct Comment {
  int64_t id = 0;
  std::string section, author, body, html, created_at;
  bool hidden = false;
  int64_t user_id = 0;
};

class AccountStore {
 public:
  // Opens the store file (RunStore::open has created and migrated it).
  static Result<std::unique_ptr<AccountStore>> open(const std::string& path);
  ~AccountStore();
  AccountStore(const AccountStore&) = delete;
  AccountStore& operator=(const AccountStore&) = delete;

  // ---- users ----
  // A new account; `taken` is set when the name (ignoring case) is already someone's.
  Result<User> create_user(const std::string& name, const std::string& password_hash, const std::string& role,
                           bool* taken = nullptr);
  // The account of that name (ignoring case) and its password hash.
  std::optional<std::pair<User, std::string>> find_user(const std::string& name);
  Result<std::vector<User>> list_users();
  Status set_role(const std::string& name, const std::string& role);
  Status set_blocked(const std::string& name, bool blocked);  // blocking also ends its sessions
  Status set_password_hash(const std::string& name, const std::string& password_hash);
  Status remove_user(const std::string& name);  // its sessions and comments go with it
  int64_t count_users();

  // ---- sessions (token hashes) ----
  Status create_session(const std::string& token_hash, int64_t user_id, double now_s);
  // The session's user when it is neither idle past idle_s nor older than absolute_s (then it is
  // deleted); touches last_seen.
  std::optional<User> session_user(const std::string& token_hash, double now_s, double idle_s, double absolute_s);
  Status delete_session(const std::string& token_hash);
  Status delete_expired_sessions(double now_s, double idle_s, double absolute_s);

  // ---- class codes (hashes) ----
  Status add_class_code(const std::string& code_hash, int64_t created_by, double expires_s);
  bool class_code_valid(const std::string& code_hash, double now_s);

  // ---- comments ----
  Result<Comment> add_comment(const std::string& section, int64_t user_id, const std::string& body,
                              const std::string& html, double now_s);
  // Oldest first, ids after `after_id`, at most `limit`; hidden ones only when `include_hidden`.
  Result<std::vector<Comment>> comments(const std::string& section, bool include_hidden, int64_t after_id, int limit);
  // How many comments a section has (visible ones, or all).
  int64_t count_comments(const std::string& section, bool include_hidden);
  std::optional<Comment> comment(int64_t id);
  Status set_hidden(int64_t id, bool hidden);
  Status delete_comment(int64_t id);
  int64_t comments_since(int64_t user_id, double since_s);

  // ---- moderation log ----
  Status log(const std::string& actor, const std::string& action, const std::string& target, const std::string& detail = "");
  struct LogEntry {
    int64_t id;
    std::string at, actor, action, target, detail;
  };
  Result<std::vector<LogEntry>> moderation_log(int limit);

 private:
  AccountStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  Status sql_error(const std::string& what);
  sqlite3* db_;
  std::string path_;
  std::mutex mu_;
};

}  // namespace blocklab::server
