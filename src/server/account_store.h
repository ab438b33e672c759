// Accounts, sessions, class codes, comments, sign-in failures and the moderation log, in the server's
// store beside the runs (the run store's schema: src/lab/run_store.cpp), on SQLite or PostgreSQL
// (lab/database.h), so that every server process on one database shares them. Holds no secret in clear:
// passwords as argon2id strings, session tokens and class codes as BLAKE2b hashes (server/auth.h).
// Every method is safe from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/status.h"
#include "lab/database.h"

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
  // Opens the store (RunStore::open has created and migrated it): a file path or a postgresql:// URL.
  static Result<std::unique_ptr<AccountStore>> open(const std::string& where);
  // The same on a database already open (the server shares one between its stores).
  static Result<std::unique_ptr<AccountStore>> open(std::shared_ptr<lab::Database> db);
  AccountStore(const AccountStore&) = delete;
  AccountStore& operator=(const AccountStore&) = delete;

  // The form of a user name that is unique: names are compared ignoring ASCII case.
  static std::string name_key(const std::string& name);

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
  // When the account's comments since since_s were posted, oldest first (the per-minute limit).
  std::vector<double> comment_times_since(int64_t user_id, double since_s);

  // ---- the assistant's conversations (signed-in learners) ----
  struct AssistantMessage {
    int64_t id = 0;
    std::string role, page, text, payload, created_at;  // role: user | assistant; payload: JSON
    double created_s = 0;
  };
  // Appends one message and keeps only the account's newest `keep`.
  Status add_assistant_message(int64_t user_id, const std::string& role, const std::string& page, const std::string& text,
                               const std::string& payload, double now_s, int keep);
  // The newest `limit`, oldest first.
  Result<std::vector<AssistantMessage>> assistant_messages(int64_t user_id, int limit);
  Status clear_assistant_messages(int64_t user_id);
  // When the account's questions since since_s were asked, oldest first (the per-minute limit).
  std::vector<double> assistant_question_times_since(int64_t user_id, double since_s);

  // ---- sign-in failures (auth.h's SignInThrottle keeps its counts here) ----
  struct Failures {
    int64_t failures = 0;
    double last_s = 0;
  };
  Failures signin_failures(const std::string& key);
  // One more failure; the count starts again at 1 when the last one is older than window_s.
  Status record_signin_failure(const std::string& key, double now_s, double window_s);
  Status clear_signin_failures(const std::string& key);
  Status forget_signin_failures_before(double before_s);

  // ---- moderation log ----
  Status log(const std::string& actor, const std::string& action, const std::string& target, const std::string& detail = "");
  struct LogEntry {
    int64_t id;
    std::string at, actor, action, target, detail;
  };
  Result<std::vector<LogEntry>> moderation_log(int limit);

 private:
  explicit AccountStore(std::shared_ptr<lab::Database> db) : db_(std::move(db)) {}
  Status set_user(const std::string& name, const std::string& sql, const std::vector<lab::Value>& params,
                  const std::string& what, bool end_sessions);
  std::vector<double> times(const std::string& sql, const std::vector<lab::Value>& params);
  std::shared_ptr<lab::Database> db_;
};

}  // namespace blocklab::server
