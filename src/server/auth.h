// The secrets of sign-in (docs/accounts.md): argon2id password hashes (libsodium's crypto_pwhash, at
// most two computed at once), random tokens and their BLAKE2b hashes (the store keeps only those), the
// CSRF token derived from the session token, the session cookie, and the throttle of failed sign-ins.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

namespace blocklab::server {

class AccountStore;

// argon2id with t = kPasswordOps passes over kPasswordMemory bytes (docs/accounts.md says why).
inline constexpr unsigned long long kPasswordOps = 2;
inline constexpr size_t kPasswordMemory = size_t(64) << 20;

std::string hash_password(const std::string& password);  // "$argon2id$v=19$m=65536,t=2,p=1$..."
bool verify_password(const std::string& hash, const std::string& password);
// Spends the time of a verification for a name that has no account, so that a wrong name and a wrong
// password take as long.
void verify_password_of_nobody(const std::string& password);

std::string random_token(size_t bytes = 32);   // hex of getrandom bytes (libsodium's randombytes)
std::string token_hash(const std::string& token);  // hex BLAKE2b-256
bool same_secret(const std::string& a, const std::string& b);  // constant time
// The session's CSRF token: a keyed hash of the session token, so that it needs no storage and a
// copy of the store reveals neither.
std::string csrf_token_for(const std::string& session_token);

// The value of cookie `name` in a Cookie header, if present.
std::optional<std::string> cookie_value(const std::string& header, const std::string& name);

// A class code as a teacher reads it out: 12 of A-Z and 2-9 without look-alikes, in groups of 4
// ("K7QM-3XRD-9PTA"); normalised (upper case, letters and digits only) before it is hashed.
std::string new_class_code();
std::string normalise_class_code(const std::string& code);

// libsodium's initialisation, once per process (0: ready).
int sodium_init_once();

// Usernames are 3-32 of [A-Za-z0-9_.-]; passwords 8-256 characters. The reason, or nullopt.
std::optional<std::string> username_problem(const std::string& name);
std::optional<std::string> password_problem(const std::string& password);

// Failed sign-ins, counted per (account, address) and per address, forgotten after a quiet window.
// After kFree failures a key must wait 2^(n - kFree) s (at most kMaxWait) before the next try. An
// account attacked from many addresses slows only those addresses: a real user's own address is never
// locked out for longer than kMaxWait, and a success clears its counts.
class SignInThrottle {
 public:
  static constexpr int kFree = 5;             // per (account, address)
  static constexpr int kFreePerAddress = 20;  // per address, any accounts
  static constexpr double kMaxWait = 900;     // s
  static constexpr double kWindow = 3600;     // s without a failure: forgotten

  // The counts live in the store, so that every server process on one database throttles alike.
  explicit SignInThrottle(AccountStore& store) : store_(store) {}

  // Seconds to wait before this try is allowed (0: go ahead).
  double wait_s(const std::string& account, const std::string& address, double now_s);
  void failed(const std::string& account, const std::string& address, double now_s);
  void succeeded(const std::string& account, const std::string& address);

  // The wait after `failures` failures, the last at last_s, when `free` are allowed.
  static double wait_after(int64_t failures, double last_s, int free, double now_s);

 private:
  void prune(double now_s);
  AccountStore& store_;
  std::mutex mu_;
  double last_prune_ = 0;
};

}  // namespace blocklab::server
