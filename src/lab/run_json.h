// The run store's records as JSON: one shape for `blocklab runs ... --json` and the server's /api/runs.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

#include "lab/run_store.h"

namespace blocklab::lab {

nlohmann::json to_json(const RunRecord& run);
nlohmann::json to_json(const std::vector<StepRecord>& history);                  // [{"step", "loss", ...}]
nlohmann::json to_json(const std::vector<RunStore::StepLayers>& layer_norms);    // [{"step", "layers": [...]}]
// A worker as `GET /api/health` and `blocklab workers --json` show it; `now_s` gives its heartbeat's age.
nlohmann::json to_json(const WorkerRecord& worker, double now_s);
// step,loss,accuracy,lr,grad_norm,wall_s — one line per step, with a header.
std::string to_csv(const std::vector<StepRecord>& history);

}  // namespace blocklab::lab
