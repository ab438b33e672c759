// The experiments: each preset tests one claim of the seed pages for real, in one command
// (`blocklab experiment NAME`), stores every training run in the run store, and writes a report —
// markdown with the measured figures and SVG charts. The report says what happened, including where
// it contradicts a seed. docs/experiments.md lists them with figures from real runs.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "lab/run_store.h"
#include "lab/training_run.h"

namespace blocklab::lab {

struct ExperimentOptions {
  uint64_t seed = 0;
  // Smaller models and fewer steps, for a smoke test of the whole pipeline (seconds, not minutes).
  bool quick = false;
  int64_t steps = 0;  // > 0: overrides each preset's number of training steps
  std::string checkpoint_dir;  // the runs' checkpoints ("" : the store's default); the CLI: <--out>/checkpoints
  // Called on every training step of every run: the run's label, its index and the number of runs.
  std::function<void(const std::string& label, int run, int runs, const TrainProgress&)> on_step;
};

struct Figure {
  std::string file;     // "loss.svg"
  std::string caption;
  std::string svg;
};

struct Report {
  std::string name, title;
  std::string markdown;  // report.md, referring to the figures by file name
  std::vector<Figure> figures;
  std::vector<int64_t> run_ids;  // the training runs it stored
};

struct ExperimentInfo {
  std::string name, summary;
};
const std::vector<ExperimentInfo>& experiments();

// REQUIRES: `name` is one of experiments() (else an error naming the choices).
Result<Report> run_experiment(const std::string& name, RunStore& store, const ExperimentOptions& options);

// Writes report.md and the figures into `dir` (created if needed), each file atomically.
Status write_report(const Report& report, const std::string& dir);

}  // namespace blocklab::lab
