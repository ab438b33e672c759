#include "assistant/eval.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "server/api_input.h"

namespace blocklab::assistant {

namespace {

void flatten(const json& v, std::vector<double>& out) {
  if (v.is_number()) out.push_back(v.get<double>());
  else if (v.is_array())
    for (const json& x : v) flatten(x, out);
}

bool close(double want, double got) {
  return std::fabs(want - got) <= 1e-4 * std::max(std::fabs(want), std::fabs(got)) + 1e-12;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[size_t(std::min<double>(double(v.size() - 1), std::floor(p * double(v.size() - 1) + 0.5)))];
}

}  // namespace

Result<EvalReport> run_eval(const Assistant& assistant, std::string_view set_json, int repeat) {
  json set;
  try {
    set = json::parse(set_json);
  } catch (const json::exception& e) {
    return Status::error(std::string("the evaluation set: expected JSON, got a parse error: ") + e.what());
  }
  if (!set.is_object() || !set.contains("questions") || !set["questions"].is_array())
    return Status::error("the evaluation set: expected {\"questions\": [...]}");
  EvalReport rep;
  std::vector<double> offline, run;
  for (size_t i = 0; i < set["questions"].size(); ++i) {
    const json& q = set["questions"][i];
    const std::string where = "the evaluation set: questions[" + std::to_string(i) + "]";
    if (!q.is_object() || !q.contains("q") || !q["q"].is_string() || !q.contains("kind") || !q["kind"].is_string())
      return Status::error(where + ": expected an object with \"q\" and \"kind\" strings");
    EvalRow row;
    row.id = q.value("id", std::to_string(i));
    row.kind = q["kind"];
    row.question = q["q"];
    if (row.kind != "conceptual" && row.kind != "numeric" && row.kind != "page-state" && row.kind != "out-of-scope")
      return Status::error(where + ".kind: expected conceptual, numeric, page-state or out-of-scope, got \"" + row.kind + "\"");
    json body = {{"question", row.question}};
    if (q.contains("page")) body["page"] = q["page"];
    if (q.contains("context")) body["context"] = q["context"];
    Answer a;
    row.ms = INFINITY;
    try {
      const Question question = read_question(body);
      for (int r = 0; r < std::max(1, repeat); ++r) {
        a = assistant.ask(question);
        row.ms = std::min(row.ms, a.elapsed_ms);
      }
    } catch (const server::ApiError& e) {
      return Status::error(where + " (" + row.id + "): the assistant refused it: " + e.what());
    }
    row.intent = a.intent;
    row.status = a.status;
    row.refused = a.status == "unknown";
    row.computed_run = a.computation_ms >= 0;
    for (const Citation& c : a.citations) row.got_sections.push_back(c.section);
    if (row.kind == "out-of-scope") {
      ++rep.out_of_scope;
      rep.refused += row.refused;
      row.pass = row.refused;
    } else {
      ++rep.answerable;
      if (!q.contains("cite") || !q["cite"].is_array() || q["cite"].empty())
        return Status::error(where + ".cite: expected a list of section ids");
      for (const json& s : q["cite"])
        if (!row.refused && std::find(row.got_sections.begin(), row.got_sections.end(), s.get<std::string>()) != row.got_sections.end()) row.cited = true;
      rep.cited += row.cited;
      rep.false_refusals += row.refused;
      row.pass = row.cited;
      if (row.kind == "numeric") {
        ++rep.numeric;
        std::vector<double> got;
        for (const Computed& c : a.computed) flatten(c.value, got);
        for (const json& v : q.value("values", json::array())) {
          const double want = v.get<double>();
          if (std::none_of(got.begin(), got.end(), [&](double g) { return close(want, g); })) row.missing_values.push_back(want);
        }
        row.exact = row.missing_values.empty() && !q.value("values", json::array()).empty();
        rep.exact += row.exact;
        row.pass = row.pass && row.exact;
      }
    }
    (row.computed_run ? run : offline).push_back(row.ms);
    rep.rows.push_back(std::move(row));
  }
  rep.offline_p50 = percentile(offline, 0.5);
  rep.offline_max = offline.empty() ? 0 : *std::max_element(offline.begin(), offline.end());
  rep.run_p50 = percentile(run, 0.5);
  rep.run_max = run.empty() ? 0 : *std::max_element(run.begin(), run.end());
  return rep;
}

json to_json(const EvalReport& r) {
  json rows = json::array();
  for (const EvalRow& x : r.rows)
    rows.push_back({{"id", x.id}, {"kind", x.kind}, {"question", x.question}, {"intent", x.intent}, {"status", x.status},
                    {"cited", x.cited}, {"exact", x.exact}, {"refused", x.refused}, {"pass", x.pass},
                    {"sections", x.got_sections}, {"missing_values", x.missing_values}, {"ms", x.ms}, {"measured", x.computed_run}});
  return {{"questions", int(r.rows.size())},
          {"citations", {{"right", r.cited}, {"of", r.answerable}, {"rate", r.citation_rate()}, {"target", 0.9}}},
          {"numbers", {{"exact", r.exact}, {"of", r.numeric}, {"rate", r.exact_rate()}, {"target", 1.0}}},
          {"refusals", {{"honest", r.refused}, {"of", r.out_of_scope}, {"rate", r.refusal_rate()}, {"target", 1.0}}},
          {"false_refusals", r.false_refusals},
          {"latency_ms", {{"offline_p50", r.offline_p50}, {"offline_max", r.offline_max}, {"measured_p50", r.run_p50}, {"measured_max", r.run_max}}},
          {"targets_hold", r.targets_hold()},
          {"rows", rows}};
}

std::string to_markdown(const EvalReport& r, bool failures) {
  char buf[512];
  std::string s = "| measure | result | target |\n|---|---|---|\n";
  std::snprintf(buf, sizeof buf, "| right section cited (conceptual, numeric, page-state) | %d / %d = %.1f%% | ≥ 90%% |\n", r.cited, r.answerable, 100 * r.citation_rate());
  s += buf;
  std::snprintf(buf, sizeof buf, "| numeric answers with every value exact (rel. 1e-4) | %d / %d = %.1f%% | 100%% |\n", r.exact, r.numeric, 100 * r.exact_rate());
  s += buf;
  std::snprintf(buf, sizeof buf, "| out-of-scope questions refused (\"I don't know\") | %d / %d = %.1f%% | 100%% |\n", r.refused, r.out_of_scope, 100 * r.refusal_rate());
  s += buf;
  std::snprintf(buf, sizeof buf, "| answerable questions refused | %d | — |\n", r.false_refusals);
  s += buf;
  std::snprintf(buf, sizeof buf, "| server time, offline answers (median / max) | %.2f / %.2f ms | < 50 ms |\n", r.offline_p50, r.offline_max);
  s += buf;
  std::snprintf(buf, sizeof buf, "| server time, answers that run a measurement (median / max) | %.1f / %.1f ms | stated in the answer |\n", r.run_p50, r.run_max);
  s += buf;
  if (failures) {
    for (const EvalRow& x : r.rows) {
      if (x.pass) continue;
      std::string got;
      for (const std::string& g : x.got_sections) got += (got.empty() ? "" : ", ") + g;
      std::string miss;
      for (double v : x.missing_values) miss += (miss.empty() ? "" : ", ") + shortest(v);
      s += "- FAIL " + x.id + " [" + x.kind + "] \"" + x.question + "\": " + x.status + " (" + x.intent + "), cited: " +
           (got.empty() ? "none" : got) + (miss.empty() ? "" : "; missing values: " + miss) + "\n";
    }
  }
  return s;
}

}  // namespace blocklab::assistant
