// blocklab runs list | show ID | export ID --csv|--json | compare ID ID   [--db F] [--json]
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "lab/run_json.h"
#include "lab/run_store.h"

namespace blocklab::cli {

namespace {

using json = nlohmann::json;

struct RunsArgs {
  std::string db = "blocklab.db", output;
  int64_t id = 0, other = 0;
  bool json = false, csv = false;
  CLI::App *list = nullptr, *show = nullptr, *export_ = nullptr, *compare = nullptr;
};

json maybe(std::optional<double> v) { return v ? json(*v) : json(nullptr); }

std::string fixed(std::optional<double> v, const char* fmt) {
  if (!v || !std::isfinite(*v)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, fmt, *v);
  return buf;
}

// The first step whose training-batch accuracy reached `level`, or -1.
int64_t first_step_at(const std::vector<lab::StepRecord>& steps, double level) {
  for (const lab::StepRecord& s : steps)
    if (s.accuracy >= level) return s.step;
  return -1;
}

int list_runs(lab::RunStore& store, const RunsArgs& a) {
  Result<std::vector<lab::RunRecord>> runs = store.list_runs();
  if (!runs) return fail("runs list", runs.status());
  if (a.json) {
    json out = json::array();
    for (const lab::RunRecord& r : runs.value()) out.push_back(lab::to_json(r));
    std::cout << out.dump() << std::endl;
    return 0;
  }
  std::printf("%5s  %-20s  %-7s  %-12s  %-24s  %-11s  %11s  %9s  %9s  %8s\n", "id", "created", "task", "status", "label",
              "steps", "final loss", "accuracy", "wall s", "tok/s");
  for (const lab::RunRecord& r : runs.value()) {
    const std::string label = r.label.empty() ? r.experiment : r.label;
    std::printf("%5lld  %-20s  %-7s  %-12s  %-24.24s  %5lld/%-5lld  %11s  %9s  %9.1f  %8.0f\n", (long long)r.id,
                r.created_at.c_str(), r.task.c_str(), r.status.c_str(), label.c_str(), (long long)r.steps_done,
                (long long)r.steps_total, fixed(r.final_loss, "%.4f").c_str(),
                fixed(r.final_accuracy ? std::optional(100 * *r.final_accuracy) : std::nullopt, "%.2f%%").c_str(),
                r.wall_s, r.tokens_per_s);
  }
  return 0;
}

int show_run(lab::RunStore& store, const RunsArgs& a) {
  Result<lab::RunRecord> r = store.get_run(a.id);
  if (!r) return fail("runs show", r.status());
  Result<std::vector<lab::StepRecord>> steps = store.steps(a.id);
  if (!steps) return fail("runs show", steps.status());
  if (a.json) {
    json j = lab::to_json(r.value());
    j["history"] = lab::to_json(steps.value());
    std::cout << j.dump() << std::endl;
    return 0;
  }
  std::printf("run %lld  %s  %s%s%s\n", (long long)r->id, r->status.c_str(), r->task.c_str(),
              r->label.empty() ? "" : "  ", r->label.c_str());
  std::printf("created %s, updated %s\n", r->created_at.c_str(), r->updated_at.c_str());
  std::printf("config   %s\noptions  %s\n", r->config_json.c_str(), r->options_json.c_str());
  std::printf("steps    %lld of %lld; final held-out loss %s, accuracy %s; %.1f s, %.0f tokens/s\n",
              (long long)r->steps_done, (long long)r->steps_total, fixed(r->final_loss, "%.4f").c_str(),
              fixed(r->final_accuracy ? std::optional(100 * *r->final_accuracy) : std::nullopt, "%.2f%%").c_str(),
              r->wall_s, r->tokens_per_s);
  std::printf("checkpoint %s (step %lld)\n", r->checkpoint_path.c_str(), (long long)r->checkpoint_step);
  if (!r->error.empty()) std::printf("error    %s\n", r->error.c_str());
  const auto& s = steps.value();
  const size_t every = std::max<size_t>(1, s.size() / 10);
  std::printf("%8s %10s %9s %10s %10s\n", "step", "loss", "accuracy", "lr", "grad_norm");
  for (size_t i = 0; i < s.size(); ++i)
    if (i % every == 0 || i + 1 == s.size())
      std::printf("%8lld %10.4f %8.2f%% %10.3g %10.4g\n", (long long)s[i].step, s[i].loss, 100 * s[i].accuracy,
                  s[i].lr, s[i].grad_norm);
  return 0;
}

int export_run(lab::RunStore& store, const RunsArgs& a) {
  const std::string cmd = "runs export";
  if (a.csv == a.json) return fail(cmd, "expected exactly one of --csv or --json");
  Result<lab::RunRecord> r = store.get_run(a.id);
  if (!r) return fail(cmd, r.status());
  Result<std::vector<lab::StepRecord>> steps = store.steps(a.id);
  if (!steps) return fail(cmd, steps.status());
  std::string text;
  if (a.csv) {
    text = lab::to_csv(steps.value());
  } else {
    Result<std::vector<lab::RunStore::StepLayers>> layers = store.layer_grad_norms(a.id);
    if (!layers) return fail(cmd, layers.status());
    json j = lab::to_json(r.value());
    j["history"] = lab::to_json(steps.value());
    j["layer_grad_norms"] = lab::to_json(layers.value());
    text = j.dump() + "\n";
  }
  if (a.output.empty()) {
    std::cout << text;
    return 0;
  }
  const std::string tmp = a.output + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << text;
    if (!out.good()) {
      std::remove(tmp.c_str());
      return fail(cmd, a.output + ": cannot write");
    }
  }
  if (std::rename(tmp.c_str(), a.output.c_str()) != 0) {
    std::remove(tmp.c_str());
    return fail(cmd, a.output + ": cannot write");
  }
  return 0;
}

int compare_runs(lab::RunStore& store, const RunsArgs& a) {
  const std::string cmd = "runs compare";
  Result<lab::RunRecord> r1 = store.get_run(a.id), r2 = store.get_run(a.other);
  if (!r1) return fail(cmd, r1.status());
  if (!r2) return fail(cmd, r2.status());
  Result<std::vector<lab::StepRecord>> s1 = store.steps(a.id), s2 = store.steps(a.other);
  if (!s1) return fail(cmd, s1.status());
  if (!s2) return fail(cmd, s2.status());
  // What differs: config and option keys with different values.
  json differences = json::object();
  for (const char* part : {"config", "options"}) {
    const json j1 = json::parse(std::string(part) == "config" ? r1->config_json : r1->options_json, nullptr, false);
    const json j2 = json::parse(std::string(part) == "config" ? r2->config_json : r2->options_json, nullptr, false);
    std::set<std::string> keys;
    for (auto it = j1.begin(); j1.is_object() && it != j1.end(); ++it) keys.insert(it.key());
    for (auto it = j2.begin(); j2.is_object() && it != j2.end(); ++it) keys.insert(it.key());
    for (const std::string& k : keys) {
      const json v1 = j1.value(k, json()), v2 = j2.value(k, json());
      if (v1 != v2) differences[std::string(part) + "." + k] = {v1, v2};
    }
  }
  // Loss and accuracy at common steps (about ten of them).
  const auto& h1 = s1.value();
  const auto& h2 = s2.value();
  const size_t common = std::min(h1.size(), h2.size());
  json at_steps = json::array();
  const size_t every = std::max<size_t>(1, common / 10);
  for (size_t i = 0; i < common; ++i)
    if (i % every == 0 || i + 1 == common)
      at_steps.push_back({{"step", h1[i].step},
                          {"loss", {h1[i].loss, h2[i].loss}},
                          {"accuracy", {h1[i].accuracy, h2[i].accuracy}}});
  json out = {{"runs", {a.id, a.other}},
              {"differences", differences},
              {"status", {r1->status, r2->status}},
              {"final_loss", {maybe(r1->final_loss), maybe(r2->final_loss)}},
              {"final_accuracy", {maybe(r1->final_accuracy), maybe(r2->final_accuracy)}},
              {"first_step_accuracy_99", {first_step_at(h1, 0.99), first_step_at(h2, 0.99)}},
              {"wall_s", {r1->wall_s, r2->wall_s}},
              {"tokens_per_s", {r1->tokens_per_s, r2->tokens_per_s}},
              {"at_steps", at_steps}};
  if (a.json) {
    std::cout << out.dump() << std::endl;
    return 0;
  }
  std::printf("%-28s %22s %22s\n", "", ("run " + std::to_string(a.id)).c_str(), ("run " + std::to_string(a.other)).c_str());
  for (auto it = differences.begin(); it != differences.end(); ++it)
    std::printf("%-28s %22s %22s\n", it.key().c_str(), it.value()[0].dump().c_str(), it.value()[1].dump().c_str());
  std::printf("%-28s %22s %22s\n", "status", r1->status.c_str(), r2->status.c_str());
  std::printf("%-28s %22s %22s\n", "final held-out loss", fixed(r1->final_loss, "%.4f").c_str(),
              fixed(r2->final_loss, "%.4f").c_str());
  std::printf("%-28s %22s %22s\n", "final held-out accuracy",
              fixed(r1->final_accuracy ? std::optional(100 * *r1->final_accuracy) : std::nullopt, "%.2f%%").c_str(),
              fixed(r2->final_accuracy ? std::optional(100 * *r2->final_accuracy) : std::nullopt, "%.2f%%").c_str());
  std::printf("%-28s %22lld %22lld\n", "first step at 99% accuracy", (long long)first_step_at(h1, 0.99),
              (long long)first_step_at(h2, 0.99));
  std::printf("%-28s %22.1f %22.1f\n", "wall s", r1->wall_s, r2->wall_s);
  std::printf("\n%8s %12s %12s %10s %10s\n", "step", "loss", "loss", "accuracy", "accuracy");
  for (const json& row : at_steps)
    std::printf("%8lld %12.4f %12.4f %9.2f%% %9.2f%%\n", (long long)row["step"].get<int64_t>(),
                row["loss"][0].is_number() ? row["loss"][0].get<double>() : NAN,
                row["loss"][1].is_number() ? row["loss"][1].get<double>() : NAN,
                100 * (row["accuracy"][0].is_number() ? row["accuracy"][0].get<double>() : NAN),
                100 * (row["accuracy"][1].is_number() ? row["accuracy"][1].get<double>() : NAN));
  return 0;
}

}  // namespace

Runner add_runs_command(CLI::App& sub) {
  auto a = std::make_shared<RunsArgs>();
  sub.require_subcommand(1, 1);
  add_db_flag(sub, a->db, "the run store", true);
  a->list = sub.add_subcommand("list", "every run: task, status, steps, final figures");
  a->list->add_flag("--json", a->json, "as JSON");
  a->show = sub.add_subcommand("show", "one run: config, options, final figures, checkpoint, loss curve");
  a->show->add_option("id", a->id, "run id")->required();
  a->show->add_flag("--json", a->json, "as JSON, with the whole history");
  a->export_ = sub.add_subcommand("export", "one run's metrics: --csv (one row per step) or --json (everything)");
  a->export_->add_option("id", a->id, "run id")->required();
  a->export_->add_flag("--csv", a->csv, "steps as CSV: step,loss,accuracy,lr,grad_norm,wall_s");
  a->export_->add_flag("--json", a->json, "the run, its history and per-layer gradient norms as JSON");
  a->export_->add_option("--output", a->output, "write to this file instead of stdout");
  a->compare = sub.add_subcommand("compare", "two runs side by side: what differs, final figures, loss at common steps");
  a->compare->add_option("id", a->id, "first run id")->required();
  a->compare->add_option("other", a->other, "second run id")->required();
  a->compare->add_flag("--json", a->json, "as JSON");
  for (CLI::App* s : {a->list, a->show, a->export_, a->compare})
    add_db_flag(*s, a->db, "the run store", true);
  return [a] {
    Result<std::unique_ptr<lab::RunStore>> store = lab::RunStore::open(a->db);
    if (!store) return fail("runs", store.status());
    if (a->list->parsed()) return list_runs(*store.value(), *a);
    if (a->show->parsed()) return show_run(*store.value(), *a);
    if (a->export_->parsed()) return export_run(*store.value(), *a);
    return compare_runs(*store.value(), *a);
  };
}

}  // namespace blocklab::cli
