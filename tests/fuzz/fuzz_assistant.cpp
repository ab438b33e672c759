// libFuzzer harness: a question to the learning assistant (POST /api/assistant), as a learner or an
// attacker sends it. The first byte picks the page (its value mod 7: none, or one of the six) and the
// form: below 128 the rest is the question's text (any bytes) with that page's default state as
// context; from 128 the rest is the whole request body (JSON), read as the server reads it. An answer must
// come back, or server::ApiError with a 4xx (bad input) — never another exception, a 5xx, a crash, or an
// answer that is not an answer (no status, a citation whose url is not an app path).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "assistant/assistant.h"
#include "fuzz_common.h"
#include "server/api_input.h"

using namespace blocklab;

namespace {

struct Env {
  fuzz::Scratch scratch;
  std::unique_ptr<server::ModelRegistry> models;
  std::unique_ptr<assistant::Assistant> helper;
  Env() {
    auto r = server::ModelRegistry::open(BLOCKLAB_SOURCE_DIR "/models", "");
    if (!r) __builtin_trap();
    models = std::move(r.value());
    server::Limits limits;
    limits.max_tokens = 64;  // fast executions: short texts
    auto a = assistant::Assistant::create(models.get(), limits);
    if (!a) {
      std::fprintf(stderr, "fuzz_assistant: %s\n", a.status().message().c_str());
      __builtin_trap();
    }
    helper = std::move(a.value());
  }
};

const char* const kPages[] = {"", "other-half", "addnorm", "layernorm", "ffn", "gradflow", "train"};

[[noreturn]] void bad_answer(const std::string& why, const std::string& answer) {
  std::fprintf(stderr, "fuzz_assistant: %s\n--- answer ---\n%s\n", why.c_str(), answer.c_str());
  std::fflush(stderr);
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Env env;
  if (size < 1) return 0;
  const std::string page = kPages[(data[0] & 127) % 7];
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  fuzz::guarded<fuzz::NoExceptionExpected>("fuzz_assistant", [&] {
    const auto replace = server::json::error_handler_t::replace;
    try {
      server::json body;
      if (data[0] < 128) {
        body = {{"question", rest}};
        if (!page.empty()) body["page"] = page, body["context"] = server::json::object();
      } else {
        body = server::parse_body(rest);
      }
      const assistant::Answer a = env.helper->ask(assistant::read_question(body));
      const std::string out = a.to_json().dump(-1, ' ', false, replace);
      if (a.status != "answered" && a.status != "unknown") bad_answer("status " + a.status, out);
      if (a.answer.empty()) bad_answer("an empty answer", out);
      for (const assistant::Citation& c : a.citations)
        if (c.url.rfind("/?page=", 0) != 0) bad_answer("a citation url outside the app: " + c.url, out);
    } catch (const server::ApiError& e) {
      if (e.status >= 500) bad_answer("a " + std::to_string(e.status) + " for a question", e.body().dump(-1, ' ', false, replace));
    }
  });
  return 0;
}
