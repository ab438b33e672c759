#include "cli/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <string>

namespace blocklab::cli {

namespace {

std::string duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const long t = long(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

std::string rate(double tokens_per_s) {
  char buf[32];
  if (tokens_per_s >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", tokens_per_s / 1e6);
  else if (tokens_per_s >= 1e3) std::snprintf(buf, sizeof buf, "%.1fk", tokens_per_s / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", tokens_per_s);
  return buf;
}

}  // namespace

ProgressPrinter::ProgressPrinter(int64_t steps_total, bool quiet)
    : tty_(::isatty(STDERR_FILENO)), quiet_(quiet), every_(std::max<int64_t>(1, steps_total / 20)) {}

void ProgressPrinter::update(const lab::TrainProgress& p) {
  if (quiet_) return;
  const int64_t step = p.step.step;
  const bool last = step >= p.steps_total;
  char stats[160];
  std::snprintf(stats, sizeof stats, "step %lld/%lld  loss %.4f  acc %5.1f%%  %s tok/s  ETA %s", (long long)step,
                (long long)p.steps_total, p.step.loss, 100 * p.step.accuracy, rate(p.tokens_per_s).c_str(),
                duration(p.eta_s).c_str());
  if (tty_) {
    const auto now = std::chrono::steady_clock::now();
    if (!last && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    constexpr int kWidth = 24;
    const int filled = int(kWidth * double(step) / double(p.steps_total));
    std::string bar(size_t(filled), '#');
    bar.append(size_t(kWidth - filled), '-');
    std::fprintf(stderr, "\r[%s] %s\x1b[K", bar.c_str(), stats);
    std::fflush(stderr);
    open_line_ = true;
  } else if (step % every_ == 0 || last || step == 1) {
    std::fprintf(stderr, "%s\n", stats);
  }
}

void ProgressPrinter::finish() {
  if (open_line_) std::fputc('\n', stderr);
  open_line_ = false;
}

}  // namespace blocklab::cli
