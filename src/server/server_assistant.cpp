// The learning assistant's routes (the contract's section 6; docs/assistant.md): POST /api/assistant
// (JSON, or an event stream with Accept: text/event-stream), and the signed-in learner's conversation,
// GET and DELETE /api/assistant/history. Questions are limited per account, or per address without one.
#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "assistant/model_client.h"
#include "server/handlers.h"
#include "server/server.h"

namespace blocklab::server {

namespace {

using assistant::Answer;

std::string sse(const std::string& event, const json& data) {
  return "event: " + event + "\ndata: " + data.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

// The answer in pieces of a few words, as a model would stream it (the token events only).
std::string token_events(const Answer& a) {
  std::string out, piece;
  int words = 0;
  for (char c : a.answer) {
    piece += c;
    if (c == ' ' && ++words % 4 == 0) {
      out += sse("token", {{"text", piece}});
      piece.clear();
    }
  }
  if (!piece.empty()) out += sse("token", {{"text", piece}});
  return out;
}

std::string offline_stream(const Answer& a) { return token_events(a) + sse("done", a.to_json()); }

bool wants_stream(const http::Request& req) {
  const std::string* accept = req.header("accept");
  return accept && accept->find("text/event-stream") != std::string::npos;
}

json message_payload(const Answer& a) {
  json j = a.to_json();
  j.erase("answer");
  return j;
}

}  // namespace

void Server::assistant_routes() {
  http::Server& h = *http_;
  http::RouteOptions json_body;
  json_body.max_body = 64 << 10;  // a 2000-character question and a page's state
  json_body.content_types = {"application/json"};

  // Throws 429 (with Retry-After) past the per-minute limit: per account when signed in (counted in the
  // store, so every replica agrees), per address otherwise.
  auto check_rate = [this](const std::optional<Session>& s, const http::Request& req, http::Response& res) {
    const int per_minute = options_.assistant_per_minute;
    const double now = lab::wall_clock_s();
    double free_at = 0;
    if (s) {
      const std::vector<double> recent = accounts_->assistant_question_times_since(s->user.id, now - 60);
      if (int64_t(recent.size()) >= per_minute) free_at = recent[recent.size() - size_t(per_minute)] + 60;
    } else {
      std::lock_guard lock(assistant_limits_->mu);
      if (assistant_limits_->by_address.size() > 100000) assistant_limits_->by_address.clear();  // bounded memory
      std::deque<double>& q = assistant_limits_->by_address[client_address(req)];
      while (!q.empty() && q.front() < now - 60) q.pop_front();
      if (int64_t(q.size()) >= per_minute) free_at = q[q.size() - size_t(per_minute)] + 60;
      else q.push_back(now);
    }
    if (free_at > 0) {
      res.set_header("Retry-After", std::to_string(std::max<int64_t>(1, int64_t(std::ceil(free_at - now)))));
      throw ApiError(429, "too_many_questions",
                     "assistant: expected at most " + std::to_string(per_minute) + " questions a minute from one " +
                         (s ? "account" : "address"));
    }
  };

  h.route("POST", "/api/assistant", guarded([this, check_rate](const http::Request& req, http::Response& res) {
    std::optional<Session> s = session_for_change(req);
    const json body = parse_body(req.body);
    const assistant::Question q = assistant::read_question(body);
    check_rate(s, req, res);
    Answer a = assistant_->ask(q);
    const bool stream = wants_stream(req);
    auto remember = [this, user = s ? s->user.id : 0, q](const Answer& ans) {
      if (!user) return;
      (void)accounts_->add_assistant_message(user, "user", q.page, q.text, "{}", lab::wall_clock_s(), options_.assistant_history);
      (void)accounts_->add_assistant_message(user, "assistant", q.page, ans.answer, message_payload(ans).dump(), lab::wall_clock_s(),
                                             options_.assistant_history);
    };
    const bool use_model = model_ && a.status == "answered" && !stopped_ && model_->try_acquire();
    if (!use_model) {
      remember(a);
      if (stream) {
        res.content_type = "text/event-stream";
        res.set_header("Cache-Control", "no-cache");
        res.body = offline_stream(a);
      } else {
        send_json(res, 200, a.to_json());
      }
      return;
    }
    const std::string system = assistant::model_system_prompt(q, a, assistant_->passages(a));
    if (!stream) {
      const auto t0 = std::chrono::steady_clock::now();
      Result<std::string> reply = model_->complete(system, q.text, [this](const std::string&) { return !stopped_.load(); });
      model_->release();
      if (reply) {
        a.answer = reply.value();
        a.source = model_->options().name;
      } else {
        std::fprintf(stderr, "blocklab serve: assistant model: %s (answered from the lessons)\n", reply.status().message().c_str());
      }
      a.elapsed_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      remember(a);
      json j = a.to_json();
      if (!reply) j["model_error"] = reply.status().message();
      send_json(res, 200, j);
      return;
    }
    // Streamed: a thread reads the model's reply into `out`; the I/O thread sends what is there.
    struct Relay {
      std::mutex mu;
      std::string out;
      bool finished = false;
    };
    auto relay = std::make_shared<Relay>();
    res.content_type = "text/event-stream";
    res.set_header("Cache-Control", "no-cache");
    ++model_threads_;
    std::thread([this, relay, system, a, q, remember]() mutable {
      const auto t0 = std::chrono::steady_clock::now();
      bool sent_any = false;
      Result<std::string> reply = model_->complete(system, q.text, [&](const std::string& piece) {
        std::lock_guard lock(relay->mu);
        relay->out += sse("token", {{"text", piece}});
        sent_any = true;
        http_->wake();
        return !stopped_.load();
      });
      model_->release();
      a.elapsed_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      json done;
      if (reply) {
        a.answer = reply.value();
        a.source = model_->options().name;
        done = a.to_json();
      } else {
        std::fprintf(stderr, "blocklab serve: assistant model: %s (answered from the lessons)\n", reply.status().message().c_str());
        done = a.to_json();
        done["model_error"] = reply.status().message();
      }
      remember(a);
      {
        std::lock_guard lock(relay->mu);
        // Without a model's word sent, the offline answer streams as usual; else `done` replaces the text.
        relay->out += (sent_any ? "" : token_events(a)) + sse("done", done);
        relay->finished = true;
      }
      http_->wake();
      --model_threads_;
    }).detach();
    res.stream = [relay](std::string& out) {
      std::lock_guard lock(relay->mu);
      out += relay->out;
      relay->out.clear();
      return !relay->finished;
    };
  }), json_body);

  h.route("GET", "/api/assistant/history", guarded([this](const http::Request& req, http::Response& res) {
    std::optional<Session> s = session(req);
    if (!s) throw ApiError(401, "unauthenticated", "session: sign in to keep a conversation (POST /api/auth/login)");
    Result<std::vector<AccountStore::AssistantMessage>> m = accounts_->assistant_messages(s->user.id, options_.assistant_history);
    if (!m) throw ApiError(503, "store_unavailable", m.status().message());
    json out = json::array();
    for (const AccountStore::AssistantMessage& x : m.value()) {
      json j = {{"role", x.role}, {"text", x.text}, {"page", x.page}, {"created_at", x.created_at}};
      const json p = json::parse(x.payload, nullptr, false);
      if (x.role == "assistant" && p.is_object())
        for (const char* k : {"status", "citations", "computed", "source"})
          if (p.contains(k)) j[k] = p[k];
      out.push_back(std::move(j));
    }
    send_json(res, 200, {{"messages", out}});
  }));

  h.route("DELETE", "/api/assistant/history", guarded([this](const http::Request& req, http::Response& res) {
    std::optional<Session> s = session_for_change(req);
    if (!s) throw ApiError(401, "unauthenticated", "session: sign in to keep a conversation (POST /api/auth/login)");
    const Status st = accounts_->clear_assistant_messages(s->user.id);
    if (!st) throw ApiError(503, "store_unavailable", st.message());
    res.status = 204;
    res.content_type.clear();
  }));
}

}  // namespace blocklab::server
