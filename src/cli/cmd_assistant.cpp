// blocklab assistant ask|sections|eval|bench: the learning assistant without a server (docs/assistant.md).
//   ask QUESTION [--page P] [--context JSON] [--json]   one answer, as POST /api/assistant gives it
//   sections [--json]                                    the lessons as the assistant indexes them
//   eval [--set FILE] [--json] [--check] [--failures]    the evaluation set's scores (targets: --check)
//   bench [--set FILE] [--repeat N]                      server time per answer, the fastest of N
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "assistant/eval.h"
#include "cli/cli_common.h"
#include "io/safetensors.h"
#include "cli/commands.h"
#include "engine/blas.h"
#include "server/server.h"

namespace blocklab::cli {

namespace {

using assistant::json;

struct AssistantArgs {
  std::string question, page, context, set, models;
  bool json = false, check = false, failures = false, explain = false;
  int repeat = 5;
};

Result<std::unique_ptr<assistant::Assistant>> make_assistant(const AssistantArgs& a,
                                                               std::unique_ptr<server::ModelRegistry>& models) {
  const std::string dir = a.models.empty() ? server::beside_source("models") : a.models;
  server::Limits limits;
  Result<std::unique_ptr<server::ModelRegistry>> m = server::ModelRegistry::open(dir, "");
  if (!m) return m.status();
  models = std::move(m).value();
  return assistant::Assistant::create(models.get(), limits);
}

Result<std::string> eval_set(const AssistantArgs& a) {
  if (a.set.empty()) return std::string(assistant::builtin_eval_set());
  BLOCKLAB_RETURN_IF_ERROR(io::expect_regular_file(a.set).with_context("--set"));
  std::ifstream in(a.set, std::ios::binary);
  if (!in) return Status::error("--set " + a.set + ": cannot read the file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int run_ask(const AssistantArgs& a) {
  const std::string cmd = "assistant ask";
  std::unique_ptr<server::ModelRegistry> models;
  auto as = make_assistant(a, models);
  if (!as) return fail(cmd, as.status());
  json body = {{"question", a.question}};
  if (!a.page.empty()) body["page"] = a.page;
  if (!a.context.empty()) {
    try {
      body["context"] = json::parse(a.context);
    } catch (const json::exception& e) {
      return fail(cmd, std::string("--context: expected a JSON object, got a parse error: ") + e.what());
    }
  }
  try {
    const assistant::Question question = assistant::read_question(body);
    if (a.explain) {
      const assistant::Query q = as.value()->index().analyse(question.text);
      std::printf("words the lessons know: %.0f%% of the question's weight (coverage), %s\n", 100 * q.coverage,
                  q.informative ? "informative" : "not informative");
      for (const assistant::Query::Term& t : q.terms)
        std::printf("  %-16s -> %-16s in %3lld sections, weight %.2f%s\n", t.word.c_str(), t.matched.empty() ? "(unknown)" : t.matched.c_str(),
                    static_cast<long long>(t.sections), t.weight, t.common ? " (common)" : "");
      for (const assistant::Hit& h : as.value()->index().search(q, question.page, 3))
        std::printf("  hit %-28s score %.2f, has %.0f%% of the question's weight\n", h.section->key().c_str(), h.score, 100 * h.support);
    }
    const assistant::Answer ans = as.value()->ask(question);
    if (a.json) {
      std::cout << ans.to_json().dump(2) << "\n";
      return 0;
    }
    std::cout << ans.answer << "\n";
    for (const assistant::Computed& c : ans.computed) std::cout << "  = " << c.what << ": " << c.value.dump() << "   (" << c.formula << ")\n";
    for (const assistant::Citation& c : ans.citations) std::cout << "  → " << c.title << " [" << c.section << "] " << c.url << "\n";
    return 0;
  } catch (const server::ApiError& e) {
    return fail(cmd, std::string(e.what()));
  }
}

int run_sections(const AssistantArgs& a) {
  Result<std::vector<assistant::LessonPage>> pages = assistant::builtin_lessons();
  if (!pages) return fail("assistant sections", pages.status());
  if (a.json) {
    std::cout << assistant::lessons_json(pages.value()).dump(2) << "\n";
    return 0;
  }
  for (const assistant::LessonPage& p : pages.value()) {
    std::cout << p.page << ": " << p.title << "\n";
    for (const assistant::Section& s : p.sections) std::cout << "  " << s.key() << "  [" << s.kind << "] " << s.title << "\n";
  }
  return 0;
}

int run_eval_cmd(const AssistantArgs& a, bool bench) {
  const std::string cmd = bench ? "assistant bench" : "assistant eval";
  std::unique_ptr<server::ModelRegistry> models;
  auto as = make_assistant(a, models);
  if (!as) return fail(cmd, as.status());
  Result<std::string> set = eval_set(a);
  if (!set) return fail(cmd, set.status());
  if (a.repeat < 1 || a.repeat > 1000) return fail(cmd, "--repeat: expected 1 to 1000, got " + std::to_string(a.repeat));
  Result<assistant::EvalReport> rep = assistant::run_eval(*as.value(), set.value(), bench ? a.repeat : 1);
  if (!rep) return fail(cmd, rep.status());
  if (a.json) std::cout << assistant::to_json(rep.value()).dump(2) << "\n";
  else if (bench) {
    std::printf("assistant bench: %zu questions, the fastest of %d runs each, 1 thread\n", rep.value().rows.size(), a.repeat);
    std::printf("%-16s %-12s %9s  %s\n", "id", "intent", "ms", "question");
    for (const assistant::EvalRow& r : rep.value().rows)
      std::printf("%-16s %-12s %9.3f  %s\n", r.id.c_str(), r.intent.c_str(), r.ms, r.question.substr(0, 60).c_str());
    std::printf("offline answers: median %.3f ms, max %.3f ms; answers with a measurement: median %.1f ms, max %.1f ms\n",
                rep.value().offline_p50, rep.value().offline_max, rep.value().run_p50, rep.value().run_max);
  } else {
    std::cout << assistant::to_markdown(rep.value(), a.failures);
  }
  if (a.check && !rep.value().targets_hold()) {
    std::cerr << "blocklab " << cmd << ": the targets do not hold (≥ 90% right citations, 100% exact numbers, 100% refusals)\n";
    return 1;
  }
  return 0;
}

}  // namespace

Runner add_assistant_command(CLI::App& sub) {
  auto a = std::make_shared<AssistantArgs>();
  sub.require_subcommand(1);
  auto models_flag = [a](CLI::App* s) { s->add_option("--models", a->models, "built-in models folder, for answers about a page's state (default models/ of the source tree)"); };
  CLI::App* ask = sub.add_subcommand("ask", "answer one question, as POST /api/assistant does");
  ask->add_option("question", a->question, "the question (1 to 2000 characters)")->required();
  ask->add_option("--page", a->page, "the page it is asked on (course, other-half, ffn, layernorm, gradflow, addnorm, train, cheatsheet)");
  ask->add_option("--context", a->context, "that page's state as JSON, e.g. '{\"act\": \"relu\"}'");
  ask->add_flag("--json", a->json, "the API's JSON answer");
  ask->add_flag("--explain", a->explain, "first, how the question's words were read (known, corrected, unknown) and weighed");
  models_flag(ask);
  CLI::App* sections = sub.add_subcommand("sections", "the lessons' sections as the assistant indexes them (lessons/*.md)");
  sections->add_flag("--json", a->json, "as JSON (the web app's parser must agree with it)");
  CLI::App* eval = sub.add_subcommand("eval", "score the evaluation set: right citations, exact numbers, honest refusals");
  eval->add_option("--set", a->set, "an evaluation set (default: lessons/assistant_eval.json, compiled in)");
  eval->add_flag("--json", a->json, "every question's result as JSON");
  eval->add_flag("--check", a->check, "exit 1 unless ≥ 90% right citations, 100% exact numbers and 100% refusals");
  eval->add_flag("--failures", a->failures, "list the questions that did not pass");
  models_flag(eval);
  CLI::App* bench = sub.add_subcommand("bench", "server time of every evaluation answer, the fastest of --repeat runs");
  bench->add_option("--set", a->set, "an evaluation set (default: the built-in one)");
  bench->add_option("--repeat", a->repeat, "runs per question (default 5)");
  bench->add_flag("--json", a->json, "as JSON");
  models_flag(bench);
  return [a, ask, sections, eval, bench]() {
    set_blas_threads(1);  // as in serve
    if (ask->parsed()) return run_ask(*a);
    if (sections->parsed()) return run_sections(*a);
    if (eval->parsed()) return run_eval_cmd(*a, false);
    (void)bench;
    return run_eval_cmd(*a, true);
  };
}

}  // namespace blocklab::cli
