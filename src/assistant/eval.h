// The assistant's evaluation (`blocklab assistant eval`, docs/assistant.md): a set of learner questions
// (lessons/assistant_eval.json) with the sections a right answer cites and, for numeric ones, the exact
// values; the report counts right citations, exact numbers and honest refusals, and times every answer.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "assistant/assistant.h"

namespace blocklab::assistant {

struct EvalRow {
  std::string id, kind, question, intent, status;
  bool cited = false;        // a wanted section among the citations (answered questions)
  bool exact = true;         // every wanted value among the computed numbers (numeric questions)
  bool refused = false;      // status "unknown"
  bool pass = false;         // what its kind asks: cited (and exact), or refused when out of scope
  std::vector<std::string> got_sections;
  std::vector<double> missing_values;
  double ms = 0;             // the fastest of the repeats
  bool computed_run = false; // it ran a measurement (computation_ms)
};

struct EvalReport {
  std::vector<EvalRow> rows;
  int answerable = 0, cited = 0;   // conceptual, numeric and page-state questions; with a right citation
  int numeric = 0, exact = 0;      // numeric questions; with every value exact
  int out_of_scope = 0, refused = 0;
  int false_refusals = 0;          // answerable questions it said "I don't know" to
  // Server time per answer: offline (no measurement) and with one, in ms.
  double offline_p50 = 0, offline_max = 0, run_p50 = 0, run_max = 0;
  double citation_rate() const { return answerable ? double(cited) / answerable : 1; }
  double exact_rate() const { return numeric ? double(exact) / numeric : 1; }
  double refusal_rate() const { return out_of_scope ? double(refused) / out_of_scope : 1; }
  bool targets_hold() const { return citation_rate() >= 0.9 && exact_rate() == 1 && refusal_rate() == 1; }
};

// Runs every question `repeat` times (the latency is the fastest). A malformed set is an error naming
// the question and field.
Result<EvalReport> run_eval(const Assistant& assistant, std::string_view set_json, int repeat = 1);

nlohmann::json to_json(const EvalReport& r);
// The summary table (Markdown) and, when `failures`, a line per question that did not pass.
std::string to_markdown(const EvalReport& r, bool failures);

}  // namespace blocklab::assistant
