// The learning assistant over HTTP (the contract's section 6): answers as JSON and as an event stream,
// every refusal a 4xx naming the field, the per-minute limits (per account in the store, per address
// without one), CSRF and Origin on a signed-in question, and the conversation kept per account. On both
// backends (tests/support/test_postgres.h).
#include <gtest/gtest.h>

#include "test_server.h"

namespace blocklab::server {
namespace {

using blocklab::testing::Browser;
using blocklab::testing::code;
using blocklab::testing::conforms;
using blocklab::testing::status;

class AssistantApiTest : public blocklab::testing::ServerTestBase {
 protected:
  void start_with(ServerOptions o = {}) { start(o, std::string(BLOCKLAB_SOURCE_DIR) + "/models"); }
};

// The stream's events, in order: (event, data).
std::vector<std::pair<std::string, json>> events(const std::string& body) {
  std::vector<std::pair<std::string, json>> out;
  size_t at = 0;
  while (at < body.size()) {
    const size_t end = body.find("\n\n", at);
    const std::string block = body.substr(at, end == std::string::npos ? std::string::npos : end - at);
    at = end == std::string::npos ? body.size() : end + 2;
    std::string ev, data;
    size_t p = 0;
    while (p < block.size()) {
      const size_t nl = std::min(block.find('\n', p), block.size());
      const std::string line = block.substr(p, nl - p);
      if (line.rfind("event: ", 0) == 0) ev = line.substr(7);
      if (line.rfind("data: ", 0) == 0) data = line.substr(6);
      p = nl + 1;
    }
    if (!ev.empty()) out.emplace_back(ev, json::parse(data));
  }
  return out;
}

TEST_P(AssistantApiTest, AnswersWithTheEngineNumbersCitationsAndLinks) {
  start_with();
  Browser b(port_);
  httplib::Result r = b.post("/api/assistant", {{"question", "LayerNorm of [0.1, 2.3, -1.2]?"}, {"page", "layernorm"}});
  ASSERT_EQ(status(r), 200) << r->body;
  conforms(r, "/api/assistant", "post");
  const json j = json::parse(r->body);
  EXPECT_EQ(j["status"], "answered");
  EXPECT_EQ(j["source"], "lessons");
  EXPECT_EQ(j["citations"][0]["url"], "/?page=layernorm&tab=mean&x=0.1,2.3,-1.2#step-by-step");
  bool mean = false, sd = false;
  for (const json& c : j["computed"]) {
    if (c["value"].is_number() && std::fabs(c["value"].get<double>() - 0.4) < 1e-6) mean = true;
    if (c["value"].is_number() && std::fabs(c["value"].get<double>() - 1.4445333) < 1e-6) sd = true;
    EXPECT_TRUE(c.contains("formula"));
  }
  EXPECT_TRUE(mean && sd) << j["computed"].dump();
}

TEST_P(AssistantApiTest, StreamsTheSameAnswerAsTokensThenDone) {
  start_with();
  Browser b(port_);
  const json q = {{"question", "why did the bars shrink?"}, {"page", "ffn"}, {"context", {{"text", "Four score and seven"}, {"act", "relu"}}}};
  httplib::Result r = b.post("/api/assistant", q, true, {{"Accept", "text/event-stream"}});
  ASSERT_EQ(status(r), 200);
  EXPECT_EQ(r->get_header_value("Content-Type").rfind("text/event-stream", 0), 0u);
  const auto ev = events(r->body);
  ASSERT_GE(ev.size(), 3u);
  std::string text;
  for (size_t i = 0; i + 1 < ev.size(); ++i) {
    EXPECT_EQ(ev[i].first, "token");
    text += ev[i].second["text"].get<std::string>();
  }
  EXPECT_EQ(ev.back().first, "done");
  EXPECT_EQ(text, ev.back().second["answer"].get<std::string>());
  const json plain = json::parse(b.post("/api/assistant", q)->body);
  EXPECT_EQ(plain["answer"], ev.back().second["answer"]);
  EXPECT_EQ(plain["computed"], ev.back().second["computed"]);
}

TEST_P(AssistantApiTest, BadQuestionsAreRefusedNamingTheField) {
  start_with();
  Browser b(port_);
  const std::vector<std::pair<json, std::string>> bad = {
      {json::object(), "question"},
      {{{"question", ""}}, "question"},
      {{{"question", std::string(2001, 'x')}}, "question"},
      {{{"question", json::array()}}, "question"},
      {{{"question", "hi"}, {"page", "../etc"}}, "page"},
      {{{"question", "hi"}, {"context", 3}}, "context"},
      {{{"question", "hi"}, {"extra", 1}}, "extra"},
      {{{"question", "what is the std here?"}, {"page", "layernorm"}, {"context", {{"x", json::array({json::array({"a"})})}}}}, "context.x[0][0]"},
  };
  for (const auto& [body, field] : bad) {
    httplib::Result r = b.post("/api/assistant", body);
    ASSERT_EQ(status(r), 400) << body.dump() << " -> " << (r ? r->body : "");
    conforms(r, "/api/assistant", "post");
    EXPECT_EQ(json::parse(r->body)["error"]["field"], field) << body.dump();
  }
  httplib::Result r = b.c->Post("/api/assistant", "{\"question\": ", "application/json");
  EXPECT_EQ(status(r), 400);
  r = b.c->Post("/api/assistant", "question=hi", "application/x-www-form-urlencoded");
  EXPECT_EQ(status(r), 415);
  r = b.c->Post("/api/assistant", json{{"question", std::string(70000, 'x')}}.dump(), "application/json");
  EXPECT_EQ(status(r), 413);
  r = b.c->Post("/api/assistant", {{"Origin", "http://evil.example"}}, json{{"question", "hi"}}.dump(), "application/json");
  EXPECT_EQ(status(r), 403);
}

TEST_P(AssistantApiTest, QuestionsAreLimitedPerAddressAndPerAccount) {
  ServerOptions o;
  o.assistant_per_minute = 3;
  start_with(o);
  Browser anon(port_);
  anon.address = "10.0.0.1";
  for (int i = 0; i < 3; ++i) ASSERT_EQ(status(anon.post("/api/assistant", {{"question", "what is layernorm"}})), 200);
  httplib::Result r = anon.post("/api/assistant", {{"question", "what is layernorm"}});
  ASSERT_EQ(status(r), 429);
  EXPECT_EQ(code(r), "too_many_questions");
  const int wait = std::stoi(r->get_header_value("Retry-After"));
  EXPECT_GE(wait, 1);
  EXPECT_LE(wait, 60);
  Browser other(port_);
  other.address = "10.0.0.2";
  EXPECT_EQ(status(other.post("/api/assistant", {{"question", "what is layernorm"}})), 200);
  // Signed in: the account's own count, whatever the address.
  Browser ada = signed_up("ada");
  ada.address = "10.0.0.1";
  for (int i = 0; i < 3; ++i) ASSERT_EQ(status(ada.post("/api/assistant", {{"question", "what is rmsnorm"}})), 200);
  EXPECT_EQ(status(ada.post("/api/assistant", {{"question", "what is rmsnorm"}})), 429);
  // Refused questions are not counted against the limit.
  Browser third(port_);
  third.address = "10.0.0.3";
  for (int i = 0; i < 5; ++i) EXPECT_EQ(status(third.post("/api/assistant", {{"question", ""}})), 400);
  EXPECT_EQ(status(third.post("/api/assistant", {{"question", "what is layernorm"}})), 200);
}

TEST_P(AssistantApiTest, ASignedInLearnersConversationIsKeptAndCleared) {
  ServerOptions o;
  o.assistant_history = 4;
  start_with(o);
  Browser anon(port_);
  EXPECT_EQ(status(anon.get("/api/assistant/history")), 401);
  Browser ada = signed_up("ada");
  // A signed-in question changes state: it needs the CSRF token.
  httplib::Result r = ada.post("/api/assistant", {{"question", "what is layernorm"}}, /*with_csrf=*/false);
  EXPECT_EQ(status(r), 403);
  EXPECT_EQ(code(r), "csrf");
  ASSERT_EQ(status(ada.post("/api/assistant", {{"question", "LayerNorm of [0.1, 2.3, -1.2]?"}, {"page", "layernorm"}})), 200);
  r = ada.get("/api/assistant/history");
  ASSERT_EQ(status(r), 200);
  conforms(r, "/api/assistant/history", "get");
  json m = json::parse(r->body)["messages"];
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0]["role"], "user");
  EXPECT_EQ(m[0]["text"], "LayerNorm of [0.1, 2.3, -1.2]?");
  EXPECT_EQ(m[1]["role"], "assistant");
  EXPECT_EQ(m[1]["citations"][0]["section"], "layernorm#step-by-step");
  EXPECT_FALSE(m[1]["computed"].empty());
  // Another learner sees none of it.
  Browser bob = signed_up("bob");
  EXPECT_TRUE(json::parse(bob.get("/api/assistant/history")->body)["messages"].empty());
  // Only the newest `assistant_history` messages are kept.
  for (const char* q : {"what is rmsnorm", "what is batchnorm"}) ASSERT_EQ(status(ada.post("/api/assistant", {{"question", q}})), 200);
  m = json::parse(ada.get("/api/assistant/history")->body)["messages"];
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[0]["text"], "what is rmsnorm");
  // Clearing needs the token too.
  EXPECT_EQ(status(ada.del("/api/assistant/history", false)), 403);
  EXPECT_EQ(status(ada.del("/api/assistant/history")), 204);
  EXPECT_TRUE(json::parse(ada.get("/api/assistant/history")->body)["messages"].empty());
  EXPECT_EQ(status(anon.del("/api/assistant/history")), 401);
}

INSTANTIATE_TEST_SUITE_P(Backends, AssistantApiTest, ::testing::ValuesIn(blocklab::testing::kBackends),
                         blocklab::testing::backend_name);

}  // namespace
}  // namespace blocklab::server
