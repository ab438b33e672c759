// Accounts, sessions and comments over HTTP (the contract's section 5), each rule with the request
// that breaks it: CSRF, Origin, roles, throttling, registration modes, expiry, validation; and the store
// never holds a password or a session token in clear. Every test runs on both backends: an SQLite file
// and a PostgreSQL database (tests/support/test_postgres.h).
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "server/account_store.h"
#include "server/auth.h"
#include "engine/params.h"
#include "io/model_file.h"
#include "io/safetensors.h"
#include "test_server.h"
#include "server/server.h"

namespace blocklab::server {
namespace {

namespace fs = std::filesystem;

using blocklab::testing::Browser;
using blocklab::testing::code;
using blocklab::testing::conforms;
using blocklab::testing::status;

class AccountsTest : public blocklab::testing::ServerTestBase {
 protected:
  // A teacher made as `blocklab users add` makes one, in the store.
  void add_teacher(const std::string& name, const std::string& password) {
    lab::RunStore::open(db_).value();
    auto store = AccountStore::open(db_).value();
    ASSERT_TRUE(store->create_user(name, hash_password(password), "teacher").is_ok());
  }
  Browser signed_in(const std::string& name, const std::string& password) {
    Browser b(port_);
    EXPECT_EQ(status(b.post("/api/auth/login", {{"username", name}, {"password", password}})), 200);
    return b;
  }
};

TEST_P(AccountsTest, RegisterSignInWhoAmISignOut) {
  start();
  Browser b(port_);
  httplib::Result r = b.post("/api/auth/register", {{"username", "Ada.L"}, {"password", "correct horse"}});
  ASSERT_EQ(status(r), 201) << r->body;
  conforms(r, "/api/auth/register", "post");
  conforms(b.get("/api/auth/me"), "/api/auth/me", "get");
  const std::string set = r->get_header_value("Set-Cookie");
  for (const char* flag : {"HttpOnly", "SameSite=Lax", "Path=/"}) EXPECT_NE(set.find(flag), std::string::npos) << set;
  EXPECT_EQ(set.find("Secure"), std::string::npos);  // plain HTTP on loopback
  EXPECT_EQ(json::parse(r->body)["user"], (json{{"name", "Ada.L"}, {"role", "student"}}));
  r = b.get("/api/auth/me");
  ASSERT_EQ(status(r), 200);
  EXPECT_EQ(json::parse(r->body)["csrf_token"], b.csrf);
  // The same name in another case is taken; bad names and passwords are 400 naming the field.
  Browser other(port_);
  EXPECT_EQ(code(other.post("/api/auth/register", {{"username", "ada.l"}, {"password", "another one"}})), "username_taken");
  for (const json& bad : {json{{"username", "ab"}, {"password", "correct horse"}},
                          json{{"username", "a b c"}, {"password", "correct horse"}},
                          json{{"username", "abc"}, {"password", "short"}},
                          json{{"username", "abc"}, {"password", std::string(257, 'x')}},
                          json{{"username", 5}, {"password", "correct horse"}},
                          json{{"username", "abc"}, {"password", "correct horse"}, {"admin", true}}})
    EXPECT_EQ(status(other.post("/api/auth/register", bad)), 400) << bad.dump();
  // Sign out needs the CSRF token; then the session is gone on the server.
  const std::string old_cookie = b.cookie;
  EXPECT_EQ(code(b.post("/api/auth/logout", json::object(), false)), "csrf");
  EXPECT_EQ(status(b.post("/api/auth/logout", json::object())), 204);
  b.cookie = old_cookie;  // a stolen copy of the cookie is worth nothing now
  EXPECT_EQ(status(b.get("/api/auth/me")), 401);
  // Sign in again.
  Browser again = signed_in("ADA.L", "correct horse");
  EXPECT_EQ(status(again.get("/api/auth/me")), 200);
}

TEST_P(AccountsTest, WrongNamesAndPasswordsLookTheSameAndAreThrottled) {
  start();
  signed_up("grace");
  Browser attacker(port_);
  attacker.address = "10.0.0.66";
  const json wrong = {{"username", "grace"}, {"password", "wrong password"}};
  httplib::Result r1 = attacker.post("/api/auth/login", wrong);
  httplib::Result r2 = attacker.post("/api/auth/login", {{"username", "nobody"}, {"password", "wrong password"}});
  EXPECT_EQ(status(r1), 401);
  EXPECT_EQ(r1->body, r2->body);  // the same answer for a wrong name and a wrong password
  for (int i = 0; i < 4; ++i) attacker.post("/api/auth/login", wrong);
  httplib::Result r = attacker.post("/api/auth/login", wrong);
  EXPECT_EQ(status(r), 429);
  EXPECT_GE(std::stoi(r->get_header_value("Retry-After")), 1);
  // The right password from the attacker's address waits too; grace from her own address does not.
  EXPECT_EQ(status(attacker.post("/api/auth/login", {{"username", "grace"}, {"password", "correct horse"}})), 429);
  Browser grace(port_);
  grace.address = "10.0.0.7";
  httplib::Result own = grace.post("/api/auth/login", {{"username", "grace"}, {"password", "correct horse"}});
  EXPECT_EQ(status(own), 200) << own->body;
}

TEST_P(AccountsTest, StateChangesWithASessionNeedTheCsrfTokenAndTheServersOrigin) {
  start();
  Browser b = signed_up("alan");
  const json comment = {{"section", "ffn#position-wise"}, {"body", "hello"}};
  EXPECT_EQ(code(b.post("/api/comments", comment, false)), "csrf");
  b.csrf = std::string(64, 'a');
  EXPECT_EQ(code(b.post("/api/comments", comment)), "csrf");
  b.csrf = json::parse(b.get("/api/auth/me")->body)["csrf_token"];
  EXPECT_EQ(status(b.post("/api/comments", comment)), 201);
  // The other state-changing endpoints ask the same of a signed-in client.
  EXPECT_EQ(code(b.post("/api/runs", {{"steps", 1}}, false)), "csrf");
  EXPECT_EQ(code(b.del("/api/runs/1", false)), "csrf");
  // A foreign Origin is refused before anything (the HTTP layer).
  httplib::Headers h = b.headers(true);
  h.emplace("Origin", "http://evil.example");
  httplib::Result r = b.c->Post("/api/comments", h, comment.dump(), "application/json");
  EXPECT_EQ(status(r), 403);
  EXPECT_EQ(code(r), "forbidden_origin");
  // Without a session, commenting is 401.
  Browser anon(port_);
  EXPECT_EQ(code(anon.post("/api/comments", comment)), "unauthenticated");
}

TEST_P(AccountsTest, CommentsOldestFirstValidatedLimitedAndPaged) {
  ServerOptions o;
  o.comments_per_minute = 5;
  o.comments_page = 3;
  start(o);
  Browser a = signed_up("alice"), b = signed_up("bob");
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(status(a.post("/api/comments", {{"section", "residual#highway"}, {"body", "a" + std::to_string(i)}})), 201);
  ASSERT_EQ(status(b.post("/api/comments", {{"section", "residual#highway"}, {"body", "**bold** and `code`"}})), 201);
  Browser anon(port_);
  httplib::Result r = anon.get("/api/comments?section=residual%23highway");
  ASSERT_EQ(status(r), 200) << r->body;
  conforms(r, "/api/comments", "get");
  conforms(b.post("/api/comments", {{"section", "x#y"}, {"body", "checked"}}), "/api/comments", "post");
  conforms(anon.get("/api/auth/me"), "/api/auth/me", "get");
  json page = json::parse(r->body);
  ASSERT_EQ(page["comments"].size(), 3u);
  EXPECT_EQ(page["count"], 4);
  EXPECT_EQ(page["comments"][0]["body"], "a0");
  EXPECT_EQ(page["comments"][0]["author"], "alice");
  const int64_t after = page["next_after"];
  page = json::parse(anon.get("/api/comments?section=residual%23highway&after=" + std::to_string(after))->body);
  ASSERT_EQ(page["comments"].size(), 1u);
  EXPECT_EQ(page["comments"][0]["html"], "<p><strong>bold</strong> and <code>code</code></p>");
  EXPECT_TRUE(page["next_after"].is_null());
  // Bad input is 400 naming the field.
  for (const json& bad : {json{{"section", "residual#highway"}, {"body", ""}},
                          json{{"section", "residual#highway"}, {"body", "   \n "}},
                          json{{"section", "residual#highway"}, {"body", std::string(4001, 'x')}},
                          json{{"section", "Residual Highway"}, {"body", "x"}},
                          json{{"section", "residual#highway"}, {"body", 5}},
                          json{{"section", "residual#highway"}}})
    EXPECT_EQ(status(b.post("/api/comments", bad)), 400) << bad.dump();
  EXPECT_EQ(status(anon.get("/api/comments")), 400);
  EXPECT_EQ(status(anon.get("/api/comments?section=x%23y&limit=0")), 400);
  EXPECT_EQ(status(anon.get("/api/comments?section=x%23y&after=-1")), 400);
  // 4000 characters are fine, counted as characters (é is two bytes).
  std::string long_body;
  for (int i = 0; i < 3998; ++i) long_body += "\xc3\xa9";
  EXPECT_EQ(status(b.post("/api/comments", {{"section", "norms#why"}, {"body", long_body + "ab"}})), 201);
  // The sixth comment of a minute from one account waits.
  for (int i = 0; i < 3; ++i) b.post("/api/comments", {{"section", "norms#why"}, {"body", "again"}});
  r = b.post("/api/comments", {{"section", "norms#why"}, {"body", "one too many"}});
  EXPECT_EQ(status(r), 429) << r->body;
  // Retry-After: until the oldest of the minute's five is a minute old (they were all posted just now).
  const int wait = std::atoi(r->get_header_value("Retry-After").c_str());
  EXPECT_GE(wait, 55);
  EXPECT_LE(wait, 60);
}

TEST_P(AccountsTest, AuthorsAndTeachersDeleteTeachersHideAndEveryActionIsLogged) {
  add_teacher("teach", "teacher password");
  start();
  Browser s1 = signed_up("student1"), s2 = signed_up("student2"), t = signed_in("teach", "teacher password");
  const int64_t c1 = json::parse(s1.post("/api/comments", {{"section", "ffn#why"}, {"body", "mine"}})->body)["comment"]["id"];
  const int64_t c2 = json::parse(s1.post("/api/comments", {{"section", "ffn#why"}, {"body", "rude"}})->body)["comment"]["id"];
  const std::string p1 = "/api/comments/" + std::to_string(c1), p2 = "/api/comments/" + std::to_string(c2);
  EXPECT_EQ(status(s2.del(p1)), 403);
  EXPECT_EQ(status(s2.post(p2 + "/hide", json::object())), 403);
  EXPECT_EQ(status(t.post(p2 + "/hide", json::object())), 200);
  auto visible = [&](Browser& b) { return json::parse(b.get("/api/comments?section=ffn%23why")->body)["comments"].size(); };
  EXPECT_EQ(visible(s2), 1u);
  EXPECT_EQ(visible(s1), 1u);
  EXPECT_EQ(visible(t), 2u);  // teachers see hidden comments, marked
  EXPECT_TRUE(json::parse(t.get("/api/comments?section=ffn%23why")->body)["comments"][1]["hidden"].get<bool>());
  EXPECT_EQ(status(t.post(p2 + "/unhide", json::object())), 200);
  EXPECT_EQ(visible(s2), 2u);
  EXPECT_EQ(status(s1.del(p1)), 204);  // its author
  EXPECT_EQ(status(t.del(p2)), 204);   // a teacher
  EXPECT_EQ(status(t.del(p2)), 404);
  // A teacher blocks an account: its session ends and it cannot sign in.
  EXPECT_EQ(status(s2.post("/api/users/student1/block", json::object())), 403);
  EXPECT_EQ(status(t.post("/api/users/student1/block", json::object())), 200);
  EXPECT_EQ(status(s1.get("/api/auth/me")), 401);
  Browser again(port_);
  EXPECT_EQ(code(again.post("/api/auth/login", {{"username", "student1"}, {"password", "correct horse"}})), "blocked");
  EXPECT_EQ(status(t.post("/api/users/nobody/block", json::object())), 404);
  // The log names every moderation action.
  auto store = AccountStore::open(db_).value();
  std::vector<std::string> actions;
  for (const auto& e : store->moderation_log(10).value()) actions.push_back(e.action + " " + e.target);
  EXPECT_EQ(actions, (std::vector<std::string>{"block user:student1", "delete comment:" + std::to_string(c2),
                                               "unhide comment:" + std::to_string(c2), "hide comment:" + std::to_string(c2)}));
}

TEST_P(AccountsTest, RegistrationOpenWithAClassCodeOrClosed) {
  add_teacher("teach", "teacher password");
  ServerOptions o;
  o.registration = "code";
  start(o);
  Browser b(port_);
  EXPECT_EQ(code(b.post("/api/auth/register", {{"username", "newbie"}, {"password", "correct horse"}})), "bad_class_code");
  EXPECT_EQ(code(b.post("/api/auth/register", {{"username", "newbie"}, {"password", "correct horse"}, {"class_code", "AAAA-BBBB-CCCC"}})),
            "bad_class_code");
  Browser t = signed_in("teach", "teacher password");
  httplib::Result r = t.post("/api/auth/class-codes", {{"hours", 2}});
  ASSERT_EQ(status(r), 201) << r->body;
  std::string class_code = json::parse(r->body)["class_code"];
  for (char& c : class_code) c = char(std::tolower(c));  // read out loud, typed in lower case
  EXPECT_EQ(status(b.post("/api/auth/register", {{"username", "newbie"}, {"password", "correct horse"}, {"class_code", class_code}})), 201);
  EXPECT_EQ(status(b.post("/api/auth/class-codes", json::object())), 403);  // a student makes none
  stop();
  o.registration = "closed";
  start(o);
  Browser c(port_);
  EXPECT_EQ(code(c.post("/api/auth/register", {{"username", "late"}, {"password", "correct horse"}})), "registration_closed");
  EXPECT_EQ(status(signed_in("newbie", "correct horse").get("/api/auth/me")), 200);
}

TEST_P(AccountsTest, TrainingJobsHaveAQuotaPerAccount) {
  add_teacher("prof", "teacher password");
  ServerOptions o;
  o.limits.max_jobs_per_account = 2;
  o.limits.max_running_jobs = 1;
  start(o);
  Browser a = signed_up("runner"), b = signed_up("other");
  const json job = {{"steps", 20000}, {"batch", 2}, {"seq_len", 4}, {"config", {{"d_model", 8}, {"n_heads", 2}, {"d_ff", 8}, {"n_layers", 1}}}};
  std::vector<int64_t> ids;
  for (int i = 0; i < 2; ++i) {
    httplib::Result r = a.post("/api/runs", job);
    ASSERT_EQ(status(r), 202) << r->body;
    ids.push_back(json::parse(r->body)["run_id"]);
  }
  httplib::Result r = a.post("/api/runs", job);
  EXPECT_EQ(status(r), 429);
  EXPECT_EQ(code(r), "too_many_jobs");
  r = b.post("/api/runs", job);  // another account has its own
  ASSERT_EQ(status(r), 202) << r->body;
  ids.push_back(json::parse(r->body)["run_id"]);
  // Each account's history holds its own runs; anonymous ones belong to nobody.
  Browser anon(port_);
  ASSERT_EQ(status(anon.post("/api/runs", job)), 202);
  auto mine = [](Browser& who) {
    std::vector<int64_t> out;
    const json runs = json::parse(who.get("/api/runs?mine=1")->body);
    for (const json& r : runs["runs"]) out.push_back(r["id"]);
    return out;
  };
  EXPECT_EQ(mine(a), (std::vector<int64_t>{ids[0], ids[1]}));
  EXPECT_EQ(mine(b), (std::vector<int64_t>{ids[2]}));
  EXPECT_EQ(status(anon.get("/api/runs?mine=1")), 401);
  EXPECT_EQ(json::parse(anon.get("/api/runs")->body)["runs"].size(), 4u);  // the whole store, as before
  // The queue is fair: while a's first job runs, the jobs of owners with none running come before a's second.
  for (int i = 0; i < 500 && json::parse(anon.get("/api/health")->body)["jobs"]["running"] != 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const json listed = json::parse(anon.get("/api/runs")->body);
  conforms(anon.get("/api/runs"), "/api/runs", "get");
  std::map<int64_t, int64_t> place;
  for (const json& run : listed["runs"])
    if (run.contains("queue_position")) place[run["id"]] = run["queue_position"];
  EXPECT_EQ(listed["queue"]["queued"], 3);
  EXPECT_EQ(listed["queue"]["running"], 1);
  EXPECT_EQ(place[ids[2]], 1);       // b: nothing running yet
  EXPECT_EQ(place[ids[2] + 1], 2);   // the anonymous job: nothing running either, submitted later
  EXPECT_EQ(place[ids[1]], 3);       // a's second: a has one running
  // Only its owner or a teacher cancels a job: not another student, nor a request without a session.
  httplib::Result not_yours = b.del("/api/runs/" + std::to_string(ids[0]));
  EXPECT_EQ(status(not_yours), 403) << not_yours->body;
  EXPECT_EQ(code(not_yours), "forbidden");
  EXPECT_EQ(status(anon.del("/api/runs/" + std::to_string(ids[1]))), 403);
  // Cancelling: a queued job at once (200 "cancelled"), the running one after its step (202 "cancelling").
  Browser teacher = signed_in("prof", "teacher password");  // cancels b's
  // (The queued ones first: once the running one stops, the worker would start the next.)
  for (size_t i : {2, 1, 0}) {
    httplib::Result d = (i < 2 ? a : teacher).del("/api/runs/" + std::to_string(ids[i]));
    EXPECT_EQ(status(d), i == 0 ? 202 : 200) << d->body;
    EXPECT_EQ(json::parse(d->body)["status"], i == 0 ? "cancelling" : "cancelled");
  }
}

TEST_P(AccountsTest, UploadsHaveAQuotaPerAccountThatSurvivesARestart) {
  ServerOptions o;
  o.limits.max_uploads_per_account = 1;
  start(o);
  auto model_bytes = [](uint64_t seed) {
    ModelConfig c;
    c.d_model = 4;
    c.n_heads = 2;
    c.d_ff = 8;
    c.n_layers = 1;
    Model<float> m = std::move(Model<float>::create(c).value());
    init_parameters(m.layout(), seed, m.params().data());
    const std::vector<uint8_t> file = io::serialize_safetensors(io::model_to_safetensors(m));
    return std::string(file.begin(), file.end());
  };
  auto upload = [&](Browser& b, uint64_t seed) {
    return b.c->Post("/api/models", b.headers(true), model_bytes(seed), "application/octet-stream");
  };
  Browser a = signed_up("uploader"), b = signed_up("another");
  EXPECT_EQ(status(upload(a, 1)), 201);
  httplib::Result r = upload(a, 2);
  EXPECT_EQ(status(r), 507);
  EXPECT_EQ(code(r), "upload_quota");
  EXPECT_EQ(status(upload(b, 3)), 201);
  stop();
  start(o);
  a = signed_in("uploader", "correct horse");
  EXPECT_EQ(code(upload(a, 4)), "upload_quota");  // the uploader is kept with the upload
}

TEST_P(AccountsTest, SessionsExpireWhenIdle) {
  ServerOptions o;
  o.session_idle_s = 1;
  start(o);
  Browser b = signed_up("sleepy");
  EXPECT_EQ(status(b.get("/api/auth/me")), 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  EXPECT_EQ(status(b.get("/api/auth/me")), 401);
}

TEST_P(AccountsTest, BehindTlsTheCookieIsSecure) {
  ServerOptions o;
  o.behind_tls = true;
  start(o);
  Browser b(port_);
  httplib::Result r = b.post("/api/auth/register", {{"username", "secure"}, {"password", "correct horse"}});
  EXPECT_NE(r->get_header_value("Set-Cookie").find("; Secure"), std::string::npos);
}

// Everything the store holds, as bytes: the SQLite file with its WAL; on PostgreSQL every row of every
// table as text, and the server's data files after a checkpoint.
std::string store_bytes(const std::string& db, const fs::path& sqlite_file) {
  std::string bytes;
  auto read_file = [&](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    bytes += ss.str();
  };
  if (!lab::Database::is_url(db)) {
    for (const char* suffix : {"", "-wal", "-shm"}) read_file(sqlite_file.string() + suffix);
    return bytes;
  }
  auto d = lab::Database::open(db).value();
  auto tables = d->query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").value();
  EXPECT_GE(tables.size(), 8u);
  for (const lab::Row& t : tables)
    for (const lab::Row& row : d->query("SELECT t::text FROM " + t.text(0) + " t").value()) bytes += row.text(0) + "\n";
  EXPECT_TRUE(d->query("CHECKPOINT").is_ok());
  const std::string admin = std::getenv("BLOCKLAB_TEST_POSTGRES");
  const size_t host = admin.find("host=") + 5;
  const fs::path data = fs::path(admin.substr(host, admin.find('&', host) - host)) / "data";
  EXPECT_TRUE(fs::is_directory(data)) << data;
  for (const auto& e : fs::recursive_directory_iterator(data, fs::directory_options::skip_permission_denied))
    if (e.is_regular_file() && e.file_size() < (64u << 20)) read_file(e.path());
  return bytes;
}

TEST_P(AccountsTest, TheStoreHoldsNoPasswordNorSessionTokenInClear) {
  start();
  const std::string password = "a very particular password 7319";
  Browser b = signed_up("keeper", password);
  ASSERT_EQ(status(b.post("/api/comments", {{"section", "ffn#why"}, {"body", "hi"}})), 201);
  Browser wrong(port_);  // a failed sign-in is counted in the store, under the name and address only
  EXPECT_EQ(status(wrong.post("/api/auth/login", {{"username", "keeper"}, {"password", "not the password 1"}})), 401);
  stop();  // the WAL is checkpointed into the file
  const std::string bytes = store_bytes(db_, dir_ / "store.db");
  ASSERT_GT(bytes.size(), 1000u);
  EXPECT_NE(bytes.find("keeper"), std::string::npos);  // the store is readable as it is
  EXPECT_NE(bytes.find("$argon2id$"), std::string::npos);
  EXPECT_EQ(bytes.find(password), std::string::npos);
  EXPECT_EQ(bytes.find("not the password 1"), std::string::npos);
  EXPECT_EQ(bytes.find(b.cookie), std::string::npos);
  EXPECT_EQ(bytes.find(b.csrf), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Backends, AccountsTest, ::testing::ValuesIn(blocklab::testing::kBackends),
                         blocklab::testing::backend_name);

}  // namespace
}  // namespace blocklab::server
