// Training progress on stderr: a live bar on a terminal (step, loss, accuracy, tokens/s, ETA),
// plain lines when stderr is not a terminal (logs, CI).
#pragma once

#include <chrono>
#include <cstdint>

#include "lab/training_run.h"

namespace blocklab::cli {

class ProgressPrinter {
 public:
  ProgressPrinter(int64_t steps_total, bool quiet);
  void update(const lab::TrainProgress& p);
  void finish();  // ends the live line

 private:
  bool tty_, quiet_, open_line_ = false;
  int64_t every_;  // plain lines: one every `every_` steps
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace blocklab::cli
