#include "server/auth.h"

#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <cstring>

#include "server/account_store.h"

namespace blocklab::server {

namespace {

std::string hex(const unsigned char* b, size_t n) {
  static const char* kHex = "0123456789abcdef";
  std::string s;
  s.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    s += kHex[b[i] >> 4];
    s += kHex[b[i] & 15];
  }
  return s;
}

// At most two argon2id computations at once (64 MiB each): sign-ins cannot starve the machine.
class HashGate {
 public:
  void enter() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return busy_ < 2; });
    ++busy_;
  }
  void leave() {
    {
      std::lock_guard lock(mu_);
      --busy_;
    }
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int busy_ = 0;
};
HashGate g_gate;

struct Gated {
  Gated() { g_gate.enter(); }
  ~Gated() { g_gate.leave(); }
};

// The CSRF token is BLAKE2b of the session token keyed with this fixed context: every server on one
// store derives the same token, and it is worth nothing without the session token, which no store keeps.
constexpr unsigned char kCsrfContext[crypto_generichash_KEYBYTES] = "blocklab csrf token v1";

}  // namespace

std::string hash_password(const std::string& password) {
  char out[crypto_pwhash_STRBYTES];
  Gated g;
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), kPasswordOps, kPasswordMemory,
                            crypto_pwhash_ALG_ARGON2ID13) != 0)
    throw std::bad_alloc();  // out of memory: the only way it fails
  return out;
}

bool verify_password(const std::string& hash, const std::string& password) {
  if (hash.size() >= crypto_pwhash_STRBYTES) return false;
  char buf[crypto_pwhash_STRBYTES] = {};
  std::memcpy(buf, hash.data(), hash.size());
  Gated g;
  return crypto_pwhash_str_verify(buf, password.data(), password.size()) == 0;
}

void verify_password_of_nobody(const std::string& password) {
  static const std::string nobody = hash_password(random_token(16));
  (void)verify_password(nobody, password);
}

std::string random_token(size_t bytes) {
  std::string raw(bytes, '\0');
  randombytes_buf(raw.data(), bytes);
  return hex(reinterpret_cast<const unsigned char*>(raw.data()), bytes);
}

std::string token_hash(const std::string& token) {
  unsigned char h[crypto_generichash_BYTES];
  crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(token.data()), token.size(), nullptr, 0);
  return hex(h, sizeof h);
}

bool same_secret(const std::string& a, const std::string& b) {
  return a.size() == b.size() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string csrf_token_for(const std::string& session_token) {
  unsigned char h[crypto_generichash_BYTES];
  crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(session_token.data()), session_token.size(),
                     kCsrfContext, sizeof kCsrfContext);
  return hex(h, sizeof h);
}

std::optional<std::string> cookie_value(const std::string& header, const std::string& name) {
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find(';', pos);
    if (end == std::string::npos) end = header.size();
    std::string part = header.substr(pos, end - pos);
    const size_t b = part.find_first_not_of(' ');
    part = b == std::string::npos ? "" : part.substr(b);
    const size_t eq = part.find('=');
    if (eq != std::string::npos && part.substr(0, eq) == name) {
      std::string v = part.substr(eq + 1);
      while (!v.empty() && v.back() == ' ') v.pop_back();
      return v;
    }
    pos = end + 1;
  }
  return std::nullopt;
}

std::string new_class_code() {
  static const char* kAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  unsigned char raw[12];
  randombytes_buf(raw, sizeof raw);
  std::string code;
  for (size_t i = 0; i < sizeof raw; ++i) {
    if (i > 0 && i % 4 == 0) code += '-';
    code += kAlphabet[raw[i] % 32];
  }
  return code;
}

std::string normalise_class_code(const std::string& code) {
  std::string out;
  for (unsigned char c : code)
    if (std::isalnum(c)) out += char(std::toupper(c));
  return out;
}

int sodium_init_once() {
  static const int rc = sodium_init() < 0 ? -1 : 0;
  return rc;
}

std::optional<std::string> username_problem(const std::string& name) {
  if (name.size() < 3 || name.size() > 32) return "expected 3 to 32 characters, got " + std::to_string(name.size());
  for (unsigned char c : name)
    if (!(std::isalnum(c) || c == '_' || c == '.' || c == '-')) return "expected only letters, digits, _ . and -";
  return std::nullopt;
}

std::optional<std::string> password_problem(const std::string& password) {
  if (password.size() < 8 || password.size() > 256)
    return "expected 8 to 256 characters, got " + std::to_string(password.size());
  return std::nullopt;
}

namespace {
std::string pair_key(const std::string& account, const std::string& address) { return "p:" + account + "\n" + address; }
std::string address_key(const std::string& address) { return "a:" + address; }
}  // namespace

double SignInThrottle::wait_after(int64_t failures, double last_s, int free, double now_s) {
  if (failures < free) return 0;
  const double wait = std::min(kMaxWait, std::ldexp(1.0, int(std::min<int64_t>(failures - free, 20))));
  return std::max(0.0, last_s + wait - now_s);
}

void SignInThrottle::prune(double now_s) {
  {
    std::lock_guard lock(mu_);
    if (now_s - last_prune_ < 60) return;
    last_prune_ = now_s;
  }
  (void)store_.forget_signin_failures_before(now_s - kWindow);
}

double SignInThrottle::wait_s(const std::string& account, const std::string& address, double now_s) {
  prune(now_s);
  double w = 0;
  for (const auto& [key, free] : {std::pair{pair_key(account, address), kFree}, {address_key(address), kFreePerAddress}}) {
    const AccountStore::Failures f = store_.signin_failures(key);
    if (now_s - f.last_s <= kWindow) w = std::max(w, wait_after(f.failures, f.last_s, free, now_s));
  }
  return w;
}

void SignInThrottle::failed(const std::string& account, const std::string& address, double now_s) {
  for (const std::string& key : {pair_key(account, address), address_key(address)})
    (void)store_.record_signin_failure(key, now_s, kWindow);
}

void SignInThrottle::succeeded(const std::string& account, const std::string& address) {
  (void)store_.clear_signin_failures(pair_key(account, address));
}

}  // namespace blocklab::server
