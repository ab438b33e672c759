// Accounts, sessions and comments (the contract's section 5; docs/accounts.md): the routes under
// /api/auth, /api/comments and /api/users, and the session and CSRF checks the other routes use.
#include <chrono>
#include <cmath>
#include <regex>

#include "server/handlers.h"
#include "server/markdown.h"
#include "server/server.h"

namespace blocklab::server {

namespace {

constexpr const char* kCookie = "blocklab_session";

double wall_s() {
  return lab::wall_clock_s();
}

json user_json(const User& u) { return {{"name", u.name}, {"role", u.role}}; }

json comment_json(const Comment& c) {
  return {{"id", c.id},     {"section", c.section},       {"author", c.author}, {"body", c.body},
          {"html", c.html}, {"created_at", c.created_at}, {"hidden", c.hidden}};
}

std::string read_string(const json& j, const std::string& name) {
  const json& v = required_field(j, name);
  if (!v.is_string()) bad_field(name, "a string", v);
  return v.get<std::string>();
}

// A section id of the web app: "ffn#position-wise" (its page's topic, '#', the section's anchor).
const std::regex& section_pattern() {
  static const std::regex re(R"([a-z0-9][a-z0-9_-]{0,39}#[a-z0-9][a-z0-9_.-]{0,79})");
  return re;
}

std::string read_section(const std::string& s) {
  if (!std::regex_match(s, section_pattern()))
    throw ApiError(400, "bad_request",
                   "section: expected PAGE#ANCHOR (lower-case letters, digits, - and _; e.g. ffn#position-wise), got \"" +
                       s.substr(0, 60) + "\"",
                   "section");
  return s;
}

}  // namespace

std::string Server::client_address(const http::Request& req) const {
  if (!options_.trusted_proxy.empty() && req.remote_addr == options_.trusted_proxy)
    if (const std::string* fwd = req.header("x-forwarded-for")) {
      const size_t comma = fwd->rfind(',');
      std::string last = comma == std::string::npos ? *fwd : fwd->substr(comma + 1);
      const size_t b = last.find_first_not_of(' ');
      if (b != std::string::npos) return last.substr(b, 64);
    }
  return req.remote_addr;
}

bool Server::secure_request(const http::Request& req) const {
  if (options_.behind_tls) return true;
  if (!options_.trusted_proxy.empty() && req.remote_addr == options_.trusted_proxy)
    if (const std::string* proto = req.header("x-forwarded-proto")) return *proto == "https";
  return false;
}

std::optional<Server::Session> Server::session(const http::Request& req) {
  const std::string* cookie = req.header("cookie");
  if (!cookie) return std::nullopt;
  std::optional<std::string> token = cookie_value(*cookie, kCookie);
  if (!token || token->size() != 64) return std::nullopt;
  std::optional<User> u =
      accounts_->session_user(token_hash(*token), wall_s(), options_.session_idle_s, options_.session_absolute_s);
  if (!u) return std::nullopt;
  return Session{*u, *token};
}

std::optional<Server::Session> Server::session_for_change(const http::Request& req) {
  std::optional<Session> s = session(req);
  if (!s) return std::nullopt;
  const std::string* given = req.header("x-csrf-token");
  if (!given || !same_secret(*given, csrf_token_for(s->token)))
    throw ApiError(403, "csrf",
                   "X-CSRF-Token: a request that changes state with a session must send the session's csrf_token "
                   "(GET /api/auth/me)",
                   "X-CSRF-Token");
  return s;
}

void Server::account_routes() {
  http::Server& h = *http_;
  http::RouteOptions json_body;
  json_body.max_body = 64 << 10;
  json_body.content_types = {"application/json"};
  auto post = [&h, json_body](const std::string& path, Handler fn) { h.route("POST", path, guarded(std::move(fn)), json_body); };
  auto get = [&h](const std::string& path, Handler fn) { h.route("GET", path, guarded(std::move(fn))); };
  auto del = [&h](const std::string& path, Handler fn) { h.route("DELETE", path, guarded(std::move(fn))); };

  // A new session for `u`: its token goes to the client as the cookie, only its hash to the store.
  auto start_session = [this](const http::Request& req, http::Response& res, const User& u, int status) {
    const std::string token = random_token(32);
    const Status st = accounts_->create_session(token_hash(token), u.id, wall_s());
    if (!st) throw ApiError(503, "store_unavailable", st.message());
    std::string cookie = std::string(kCookie) + "=" + token + "; HttpOnly; SameSite=Lax; Path=/; Max-Age=" +
                         std::to_string(int64_t(options_.session_absolute_s));
    if (secure_request(req)) cookie += "; Secure";
    res.set_header("Set-Cookie", cookie);
    send_json(res, status, {{"user", user_json(u)}, {"csrf_token", csrf_token_for(token)}});
  };

  post("/api/auth/register", [this, start_session](const http::Request& req, http::Response& res) {
    const json j = parse_body(req.body);
    reject_unknown_keys(j, {"username", "password", "class_code"});
    const std::string name = read_string(j, "username"), password = read_string(j, "password");
    if (auto why = username_problem(name)) bad_field("username", *why, json(name.substr(0, 40)));
    if (auto why = password_problem(password)) throw ApiError(400, "bad_request", "password: " + *why, "password");
    if (registration_ == "closed")
      throw ApiError(403, "registration_closed", "registration: closed on this server: ask the teacher for an account");
    if (registration_ == "code") {
      const json* code = optional_field(j, "class_code");
      if (!code || !code->is_string() ||
          !accounts_->class_code_valid(token_hash(normalise_class_code(code->get<std::string>())), wall_s()))
        throw ApiError(403, "bad_class_code", "class_code: expected the class code your teacher gave you (or it has expired)",
                       "class_code");
    }
    bool taken = false;
    Result<User> u = accounts_->create_user(name, hash_password(password), "student", &taken);
    if (!u) {
      if (taken) throw ApiError(409, "username_taken", "username: '" + name + "' is taken: expected another name", "username");
      throw ApiError(503, "store_unavailable", u.status().message());
    }
    start_session(req, res, u.value(), 201);
  });

  post("/api/auth/login", [this, start_session](const http::Request& req, http::Response& res) {
    const json j = parse_body(req.body);
    reject_unknown_keys(j, {"username", "password"});
    const std::string name = read_string(j, "username"), password = read_string(j, "password");
    if (name.size() > 64 || password.size() > 256)
      throw ApiError(401, "bad_credentials", "username or password: no such account, or a wrong password");
    const std::string key = AccountStore::name_key(name);
    const std::string address = client_address(req);
    const double now = wall_s();
    if (const double wait = throttle_->wait_s(key, address, now); wait > 0) {
      res.set_header("Retry-After", std::to_string(int64_t(std::ceil(wait))));
      throw ApiError(429, "too_many_attempts",
                     "sign-in: too many failed attempts: expected a retry in " + std::to_string(int64_t(std::ceil(wait))) + " s");
    }
    std::optional<std::pair<User, std::string>> found = accounts_->find_user(name);
    const bool ok = found ? verify_password(found->second, password) : (verify_password_of_nobody(password), false);
    if (!ok || found->first.blocked) {
      // the wait counts from the failure's answer, not from the request's start: the hash alone may take
      // longer than the first wait (1 s) on a loaded machine
      throttle_->failed(key, address, wall_s());
      if (ok && found->first.blocked)
        throw ApiError(403, "blocked", "account '" + found->first.name + "': blocked by a teacher");
      throw ApiError(401, "bad_credentials", "username or password: no such account, or a wrong password");
    }
    throttle_->succeeded(key, address);
    start_session(req, res, found->first, 200);
  });

  post("/api/auth/logout", [this](const http::Request& req, http::Response& res) {
    std::optional<Session> s = session_for_change(req);
    if (s) (void)accounts_->delete_session(token_hash(s->token));
    std::string cookie = std::string(kCookie) + "=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0";
    if (secure_request(req)) cookie += "; Secure";
    res.set_header("Set-Cookie", cookie);
    res.status = 204;
  });

  get("/api/auth/me", [this](const http::Request& req, http::Response& res) {
    std::optional<Session> s = session(req);
    if (!s) throw ApiError(401, "unauthenticated", "session: not signed in (POST /api/auth/login)");
    send_json(res, 200, {{"user", user_json(s->user)}, {"csrf_token", csrf_token_for(s->token)},
                         {"registration", registration_}});
  });

  auto teacher = [this](const http::Request& req) {
    std::optional<Session> s = session_for_change(req);
    if (!s) throw ApiError(401, "unauthenticated", "session: expected a teacher signed in");
    if (s->user.role != "teacher") throw ApiError(403, "forbidden", "role: expected a teacher, got " + s->user.role);
    return *s;
  };

  post("/api/auth/class-codes", [this, teacher](const http::Request& req, http::Response& res) {
    const Session t = teacher(req);
    const json j = parse_body(req.body);
    reject_unknown_keys(j, {"hours"});
    const int64_t hours = read_integer(j, "hours", 168, 1, 24 * 90);
    const std::string code = new_class_code();
    const double expires = wall_s() + double(hours) * 3600;
    Status st = accounts_->add_class_code(token_hash(normalise_class_code(code)), t.user.id, expires);
    if (!st) throw ApiError(503, "store_unavailable", st.message());
    (void)accounts_->log(t.user.name, "class_code", "registration", "valid " + std::to_string(hours) + " h");
    send_json(res, 201, {{"class_code", code}, {"expires_in_s", hours * 3600}});
  });

  // ---- Users (teachers) ----------------------------------------------------------------------------
  get("/api/users", [this](const http::Request& req, http::Response& res) {
    std::optional<Session> s = session(req);
    if (!s) throw ApiError(401, "unauthenticated", "session: expected a teacher signed in");
    if (s->user.role != "teacher") throw ApiError(403, "forbidden", "role: expected a teacher, got " + s->user.role);
    Result<std::vector<User>> users = accounts_->list_users();
    if (!users) throw ApiError(503, "store_unavailable", users.status().message());
    json list = json::array();
    for (const User& u : users.value())
      list.push_back({{"name", u.name}, {"role", u.role}, {"blocked", u.blocked}, {"created_at", u.created_at}});
    send_json(res, 200, {{"users", list}});
  });
  for (const bool block : {true, false}) {
    post(std::string(R"(/api/users/([A-Za-z0-9_.\-]{1,64})/)") + (block ? "block" : "unblock"),
         [this, teacher, block](const http::Request& req, http::Response& res) {
           const Session t = teacher(req);
           const std::string name = req.matches.at(1);
           if (block && name == t.user.name) throw ApiError(400, "bad_request", "user: a teacher cannot block themself");
           const Status st = accounts_->set_blocked(name, block);
           if (!st) throw ApiError(404, "unknown_user", st.message(), "name");
           (void)accounts_->log(t.user.name, block ? "block" : "unblock", "user:" + name);
           send_json(res, 200, {{"name", name}, {"blocked", block}});
         });
  }

  // ---- Comments ------------------------------------------------------------------------------------
  get("/api/comments", [this](const http::Request& req, http::Response& res) {
    if (!req.has_param("section")) throw ApiError(400, "missing_field", "section: required (?section=PAGE#ANCHOR)", "section");
    const std::string section = read_section(req.param("section"));
    int64_t after = 0, limit = options_.comments_page;
    auto number = [&](const char* name, int64_t lo, int64_t hi, int64_t* out) {
      if (!req.has_param(name)) return;
      const std::string v = req.param(name);
      try {
        size_t used = 0;
        const long long n = std::stoll(v, &used);
        if (used == v.size() && n >= lo && n <= hi) {
          *out = n;
          return;
        }
      } catch (const std::exception&) {
      }
      throw ApiError(400, "bad_request", std::string(name) + ": expected an integer in [" + std::to_string(lo) + ", " +
                                             std::to_string(hi) + "], got \"" + v.substr(0, 30) + "\"", name);
    };
    number("after", 0, int64_t(1) << 53, &after);
    number("limit", 1, options_.comments_page, &limit);
    std::optional<Session> s = session(req);
    const bool teacher_view = s && s->user.role == "teacher";
    Result<std::vector<Comment>> list = accounts_->comments(section, teacher_view, after, int(limit) + 1);
    if (!list) throw ApiError(503, "store_unavailable", list.status().message());
    const bool more = int64_t(list->size()) > limit;
    if (more) list->pop_back();
    json out = json::array();
    for (const Comment& c : list.value()) out.push_back(comment_json(c));
    send_json(res, 200, {{"comments", out},
                         {"count", accounts_->count_comments(section, teacher_view)},
                         {"next_after", more ? json(list->back().id) : json(nullptr)}});
  });

  post("/api/comments", [this](const http::Request& req, http::Response& res) {
    std::optional<Session> s = session_for_change(req);
    if (!s) throw ApiError(401, "unauthenticated", "session: sign in to comment (POST /api/auth/login)");
    const json j = parse_body(req.body);
    reject_unknown_keys(j, {"section", "body"});
    const std::string section = read_section(read_string(j, "section"));
    const std::string body = read_string(j, "body");
    const size_t chars = utf8_length(body);  // characters, not bytes: a code point is counted once
    if (chars < 1 || chars > size_t(options_.max_comment_chars) || body.find_first_not_of(" \t\r\n") == std::string::npos)
      throw ApiError(400, "bad_request",
                     "body: expected 1 to " + std::to_string(options_.max_comment_chars) + " characters of text, got " +
                         std::to_string(chars),
                     "body");
    const double now = wall_s();
    const std::vector<double> recent = accounts_->comment_times_since(s->user.id, now - 60);
    if (int64_t(recent.size()) >= options_.comments_per_minute) {
      // Allowed again once enough of the last minute's comments are older than a minute.
      const double free_at = recent[recent.size() - size_t(options_.comments_per_minute)] + 60;
      res.set_header("Retry-After", std::to_string(std::max<int64_t>(1, int64_t(std::ceil(free_at - now)))));
      throw ApiError(429, "too_many_comments",
                     "comments: expected at most " + std::to_string(options_.comments_per_minute) + " a minute from one account");
    }
    Result<Comment> c = accounts_->add_comment(section, s->user.id, body, render_comment_markdown(body), now);
    if (!c) throw ApiError(503, "store_unavailable", c.status().message());
    send_json(res, 201, {{"comment", comment_json(c.value())}});
  });

  auto comment_of = [this](const http::Request& req) {
    const int64_t id = path_id(req, "comment");
    std::optional<Comment> c = accounts_->comment(id);
    if (!c) throw ApiError(404, "unknown_comment", "comment " + std::to_string(id) + ": no such comment", "id");
    return *c;
  };

  del(R"(/api/comments/([^/]+))", [this, comment_of](const http::Request& req, http::Response& res) {
    std::optional<Session> s = session_for_change(req);
    if (!s) throw ApiError(401, "unauthenticated", "session: sign in to delete a comment");
    const Comment c = comment_of(req);
    const bool author = c.user_id == s->user.id, is_teacher = s->user.role == "teacher";
    if (!author && !is_teacher) throw ApiError(403, "forbidden", "comment " + std::to_string(c.id) + ": only its author or a teacher may delete it");
    if (c.hidden && !is_teacher && !author) throw ApiError(404, "unknown_comment", "comment: no such comment", "id");
    const Status st = accounts_->delete_comment(c.id);
    if (!st) throw ApiError(503, "store_unavailable", st.message());
    if (!author) (void)accounts_->log(s->user.name, "delete", "comment:" + std::to_string(c.id), c.author + " in " + c.section + ": " + c.body.substr(0, 200));
    res.status = 204;
  });

  for (const bool hide : {true, false}) {
    post(std::string(R"(/api/comments/([^/]+)/)") + (hide ? "hide" : "unhide"),
         [this, teacher, comment_of, hide](const http::Request& req, http::Response& res) {
           const Session t = teacher(req);
           Comment c = comment_of(req);
           const Status st = accounts_->set_hidden(c.id, hide);
           if (!st) throw ApiError(503, "store_unavailable", st.message());
           (void)accounts_->log(t.user.name, hide ? "hide" : "unhide", "comment:" + std::to_string(c.id), c.author + " in " + c.section);
           c.hidden = hide;
           send_json(res, 200, {{"comment", comment_json(c)}});
         });
  }
}

}  // namespace blocklab::server
