// The learning assistant (the contract's section 6, docs/assistant.md): answers a learner's question
// from the lessons' own text (retrieval.h) and computes every number it gives with the engine
// (server/compute.h: the widgets' own computations), citing the sections to read and linking to the
// widget in the state it talks about. Offline and deterministic; an optional chat model (model_client.h)
// may only reword what this found. A question it cannot answer gets "I don't know" and the nearest sections.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "assistant/retrieval.h"
#include "server/api_input.h"
#include "server/model_registry.h"

namespace blocklab::assistant {

using json = nlohmann::json;

struct Computed {
  std::string what;     // "mean μ", "‖out‖ at layer 0"
  json value;           // a number, or an array of numbers
  std::string formula;  // how it was computed, in words and symbols
};

struct Citation {
  std::string section, title, url;
};

struct Answer {
  std::string status = "answered";  // answered | unknown (the honest "I don't know")
  std::string answer;               // plain text, the Markdown subset of comments
  std::vector<Citation> citations;  // the sections to read, most relevant first
  std::vector<Computed> computed;   // every number the answer took from the engine
  std::string source = "lessons";   // what wrote `answer`: the lessons, or the chat model's name
  std::string intent;               // what it did: lessons, layernorm, rmsnorm, batchnorm, activation, ffn_size,
                                    // residual, gradient_flow, drift, no_norm, page_state, unknown
  double elapsed_ms = 0;            // server time for the whole answer
  double computation_ms = -1;       // of which an engine run (a measurement), when there was one
  json to_json() const;
};

struct Question {
  std::string text;  // 1-2000 characters
  std::string page;  // a page id, or ""
  json context;      // that page's URL state (web/src/lib/pages.ts keys), or null
};

// A question from a request body {"question", "page"?, "context"?}: 400 naming the field when malformed.
Question read_question(const json& body);

class Assistant {
 public:
  // On the built-in lessons; `models` gives the page-state answers the pages' model (chars-small).
  static Result<std::unique_ptr<Assistant>> create(const server::ModelRegistry* models, server::Limits limits);

  // REQUIRES: q from read_question (or equally checked). Throws ApiError when a computation the question
  // asks for is refused (too large, not finite): the message names the question's numbers.
  Answer ask(const Question& q) const;

  const LessonIndex& index() const { return *index_; }
  // The lesson text behind an answer (its cited sections), for a chat model's prompt.
  std::vector<const Section*> passages(const Answer& a) const;

 private:
  Assistant() = default;
  std::unique_ptr<LessonIndex> index_;
  const server::ModelRegistry* models_ = nullptr;
  server::Limits limits_;
};

// The shortest decimal that reads back as the same double ("0.1", "1.4445", "1e-05").
std::string shortest(double v);
// A number for a sentence: 5 significant digits ("1.4445", "0.4", "2.1e+03" stays "2100").
std::string say(double v);

}  // namespace blocklab::assistant
