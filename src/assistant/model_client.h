// An optional chat model behind the assistant (`serve --assistant-model URL --assistant-model-name NAME`):
// an OpenAI-compatible chat-completions endpoint (llama.cpp's server, Ollama, vLLM, ...) that rewords
// what the offline assistant found. It is sent the question, the cited lesson passages and the engine's
// numbers, and told to use nothing else; BlockLab keeps the citations and numbers its own. Plain HTTP
// (a model server on this machine or the class's network); every failure is an error the caller turns
// into the offline answer.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "assistant/assistant.h"
#include "engine/status.h"

namespace blocklab::assistant {

struct ModelOptions {
  std::string url;         // the API's base, e.g. http://127.0.0.1:8081/v1 (POST {url}/chat/completions)
  std::string name;        // the "model" field, and the answers' `source`
  double timeout_s = 20;   // the whole reply, from the request
  int max_concurrent = 4;  // requests at once; past it, the offline answer
  int max_tokens = 400;
};

class ModelClient {
 public:
  static Result<std::unique_ptr<ModelClient>> create(ModelOptions options);

  // Streams the reply to `on_piece` (which returns false to stop); returns the whole reply, or an
  // error (connection, HTTP status, malformed stream, timeout, empty reply, stopped).
  Result<std::string> complete(const std::string& system, const std::string& user,
                               const std::function<bool(const std::string&)>& on_piece) const;

  // A slot for one request, or false when max_concurrent are running.
  bool try_acquire();
  void release();
  const ModelOptions& options() const { return options_; }

 private:
  explicit ModelClient(ModelOptions o) : options_(std::move(o)) {}
  ModelOptions options_;
  std::string host_;  // scheme://host:port
  std::string path_;  // /v1/chat/completions
  std::atomic<int> running_{0};
};

// The system prompt: the rules, the passages and the numbers. The user message is the question.
std::string model_system_prompt(const Question& q, const Answer& offline, const std::vector<const Section*>& passages);

}  // namespace blocklab::assistant
