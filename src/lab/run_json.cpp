#include "lab/run_json.h"

#include <cstdio>

namespace blocklab::lab {

using json = nlohmann::json;

namespace {
json maybe(std::optional<double> v) { return v ? json(*v) : json(nullptr); }
}  // namespace

json to_json(const RunRecord& r) {
  return {{"id", r.id},
          {"created_at", r.created_at},
          {"updated_at", r.updated_at},
          {"kind", r.kind},
          {"task", r.task},
          {"experiment", r.experiment},
          {"label", r.label},
          {"config", json::parse(r.config_json, nullptr, false)},
          {"options", json::parse(r.options_json, nullptr, false)},
          {"seed", r.seed},
          {"status", r.status},
          {"steps_done", r.steps_done},
          {"steps_total", r.steps_total},
          {"final", {{"loss", maybe(r.final_loss)}, {"accuracy", maybe(r.final_accuracy)}}},
          {"wall_s", r.wall_s},
          {"tokens_per_s", r.tokens_per_s},
          {"checkpoint", {{"path", r.checkpoint_path}, {"step", r.checkpoint_step}}},
          {"error", r.error},
          {"attempts", r.attempts}};
}

json to_json(const WorkerRecord& w, double now_s) {
  return {{"id", w.id},       {"host", w.host},         {"kind", w.kind},
          {"pid", w.pid},     {"max_jobs", w.max_jobs}, {"running", w.running},
          {"started_at", w.started_at}, {"heartbeat_age_s", now_s - w.heartbeat_s},
          {"live", now_s - w.heartbeat_s < kWorkerLiveS}};
}

json to_json(const std::vector<StepRecord>& steps) {
  json out = json::array();
  for (const StepRecord& s : steps)
    out.push_back({{"step", s.step}, {"loss", s.loss}, {"accuracy", s.accuracy}, {"lr", s.lr},
                   {"grad_norm", s.grad_norm}, {"wall_s", s.wall_s}});
  return out;
}

json to_json(const std::vector<RunStore::StepLayers>& layer_norms) {
  json out = json::array();
  for (const auto& sl : layer_norms) {
    json per = json::array();
    for (const LayerGradNorm& l : sl.layers)
      per.push_back({{"layer", l.layer}, {"grad_norm_params", l.grad_norm_params}, {"grad_norm_resid", l.grad_norm_resid}});
    out.push_back({{"step", sl.step}, {"layers", per}});
  }
  return out;
}

std::string to_csv(const std::vector<StepRecord>& steps) {
  std::string text = "step,loss,accuracy,lr,grad_norm,wall_s\n";
  char line[256];
  for (const StepRecord& s : steps) {
    std::snprintf(line, sizeof line, "%lld,%.9g,%.9g,%.9g,%.9g,%.6f\n", (long long)s.step, s.loss, s.accuracy, s.lr,
                  s.grad_norm, s.wall_s);
    text += line;
  }
  return text;
}

}  // namespace blocklab::lab
