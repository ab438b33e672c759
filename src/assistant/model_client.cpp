#include "assistant/model_client.h"

#include <httplib.h>

#include <chrono>
#include <regex>

namespace blocklab::assistant {

Result<std::unique_ptr<ModelClient>> ModelClient::create(ModelOptions o) {
  static const std::regex kUrl(R"(^(http://[A-Za-z0-9.\-\[\]:]+)(/[^\s?#]*)?$)");
  std::smatch m;
  if (o.url.starts_with("https://"))
    return Status::error("--assistant-model: expected an http:// URL (this build speaks plain HTTP to a model server on this machine or network), got " + o.url);
  if (!std::regex_match(o.url, m, kUrl))
    return Status::error("--assistant-model: expected a URL like http://127.0.0.1:8081/v1, got \"" + o.url + "\"");
  if (o.name.empty()) return Status::error("--assistant-model-name: expected the model's name (the request's \"model\"), got nothing");
  std::unique_ptr<ModelClient> c(new ModelClient(std::move(o)));
  c->host_ = m[1];
  std::string base = m[2].matched ? std::string(m[2]) : "";
  while (!base.empty() && base.back() == '/') base.pop_back();
  c->path_ = base + "/chat/completions";
  return c;
}

bool ModelClient::try_acquire() {
  int n = running_.load();
  while (n < options_.max_concurrent)
    if (running_.compare_exchange_weak(n, n + 1)) return true;
  return false;
}
void ModelClient::release() { running_.fetch_sub(1); }

Result<std::string> ModelClient::complete(const std::string& system, const std::string& user,
                                          const std::function<bool(const std::string&)>& on_piece) const {
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  httplib::Client cli(host_);
  const time_t secs = time_t(std::max(1.0, options_.timeout_s));
  cli.set_connection_timeout(secs);
  cli.set_read_timeout(secs);
  cli.set_write_timeout(secs);
  const nlohmann::json body = {{"model", options_.name},
                               {"stream", true},
                               {"temperature", 0.2},
                               {"max_tokens", options_.max_tokens},
                               {"messages", {{{"role", "system"}, {"content", system}}, {{"role", "user"}, {"content", user}}}}};
  std::string pending, reply, problem;
  bool stopped = false, done = false;
  httplib::Request req;
  req.method = "POST";
  req.path = path_;
  req.headers = {{"Accept", "text/event-stream"}, {"Content-Type", "application/json"}};
  req.body = body.dump();
  int status = 0;
  std::string error_body;
  req.response_handler = [&](const httplib::Response& r) {
    status = r.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    if (status != 200) {
      if (error_body.size() < 2000) error_body.append(data, std::min<size_t>(len, 2000));
      return true;
    }
    if (elapsed() > options_.timeout_s) {
      problem = "no complete reply within " + std::to_string(int(options_.timeout_s)) + " s";
      return false;
    }
    pending.append(data, len);
    if (pending.size() > (1 << 20)) {
      problem = "a stream line over 1 MiB";
      return false;
    }
    for (size_t nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n')) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.starts_with("data:")) continue;
      std::string payload = line.substr(5);
      if (!payload.empty() && payload[0] == ' ') payload.erase(0, 1);
      if (payload == "[DONE]") {
        done = true;
        return true;
      }
      nlohmann::json j = nlohmann::json::parse(payload, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        problem = "a stream event that is not JSON";
        return false;
      }
      const nlohmann::json* choices = j.contains("choices") && j["choices"].is_array() && !j["choices"].empty() ? &j["choices"][0] : nullptr;
      if (!choices) continue;
      const nlohmann::json& c = *choices;
      std::string piece;
      if (c.contains("delta") && c["delta"].is_object() && c["delta"].contains("content") && c["delta"]["content"].is_string())
        piece = c["delta"]["content"];
      else if (c.contains("message") && c["message"].is_object() && c["message"].contains("content") && c["message"]["content"].is_string())
        piece = c["message"]["content"];
      if (piece.empty()) continue;
      reply += piece;
      if (reply.size() > 64 * 1024) {
        problem = "a reply over 64 kB";
        return false;
      }
      if (!on_piece(piece)) {
        stopped = true;
        return false;
      }
    }
    return true;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  const bool ok = cli.send(req, res, err);
  if (stopped) return Status::error("the model's reply was stopped");
  if (!problem.empty()) return Status::error("the model at " + host_ + ": " + problem);
  if (status != 0 && status != 200)
    return Status::error("the model at " + host_ + " answered HTTP " + std::to_string(status) + ": " + error_body.substr(0, 200));
  if (!ok) return Status::error("the model at " + host_ + ": " + httplib::to_string(err));
  if (!done && reply.empty()) return Status::error("the model at " + host_ + ": an empty reply");
  if (reply.find_first_not_of(" \n\t") == std::string::npos) return Status::error("the model at " + host_ + ": an empty reply");
  return reply;
}

std::string model_system_prompt(const Question& q, const Answer& offline, const std::vector<const Section*>& passages) {
  std::string s =
      "You are the learning assistant of BlockLab, a course about the Transformer block's residual connections, "
      "normalisation and feed-forward network. Answer the learner's question in 2 to 5 plain sentences, in your own words, "
      "using ONLY the lesson passages and the computed numbers below. Quote every number exactly as given; never compute, "
      "round differently or invent a number or a fact. If the passages do not answer the question, say that you do not know. "
      "Do not add links or citations: the app shows them.\n\n";
  if (!q.page.empty()) s += "The learner is on the page \"" + q.page + "\".\n\n";
  s += "Lesson passages:\n";
  for (const Section* p : passages) s += "\n[" + p->key() + "] " + p->title + "\n" + p->body + "\n";
  if (!offline.computed.empty()) {
    s += "\nNumbers computed by the engine for this question:\n";
    for (const Computed& c : offline.computed) s += "- " + c.what + " = " + c.value.dump() + " (" + c.formula + ")\n";
  }
  s += "\nA correct draft answer, to reword and explain (keep its numbers):\n" + offline.answer + "\n";
  return s;
}

}  // namespace blocklab::assistant
