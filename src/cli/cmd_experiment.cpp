// blocklab experiment NAME [--db F] [--out DIR] [--seed S] [--steps N] [--quick] [--threads N]
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "engine/blas.h"
#include "lab/experiments.h"

namespace blocklab::cli {

namespace {

struct ExperimentArgs {
  std::string name, db = "blocklab.db", out;
  uint64_t seed = 0;
  int64_t steps = 0;
  int threads = 1;
  bool quick = false, quiet = false;
};

int run_experiment_command(const ExperimentArgs& a) {
  const std::string cmd = "experiment";
  if (a.threads < 1) return fail(cmd, "--threads: expected an integer >= 1, got " + std::to_string(a.threads));
  set_blas_threads(a.threads);
  Result<std::unique_ptr<lab::RunStore>> store = lab::RunStore::open(a.db);
  if (!store) return fail(cmd, store.status());
  lab::ExperimentOptions options;
  options.seed = a.seed;
  options.quick = a.quick;
  options.steps = a.steps;
  const std::string out = a.out.empty() ? "reports/" + a.name : a.out;
  options.checkpoint_dir = out + "/checkpoints";  // beside the report, not beside the store
  const bool tty = ::isatty(STDERR_FILENO);
  if (!a.quiet)
    options.on_step = [tty](const std::string& label, int run, int runs, const lab::TrainProgress& p) {
      const bool last = p.step.step >= p.steps_total;
      if (!tty && !last && p.step.step % std::max<int64_t>(1, p.steps_total / 5) != 0) return;
      std::fprintf(stderr, "%s[%d/%d %s] step %lld/%lld  loss %.4f  acc %5.1f%%  ETA %.0f s%s", tty ? "\r" : "", run,
                   runs, label.c_str(), (long long)p.step.step, (long long)p.steps_total, p.step.loss,
                   100 * p.step.accuracy, p.eta_s, tty ? (last ? "\x1b[K\n" : "\x1b[K") : "\n");
    };
  Result<lab::Report> report = lab::run_experiment(a.name, *store.value(), options);
  if (!report) return fail(cmd, report.status());
  if (Status st = lab::write_report(report.value(), out); !st) return fail(cmd, st);
  std::printf("%s: report %s/report.md (%zu figures), %zu runs stored in %s\n", a.name.c_str(), out.c_str(),
              report->figures.size(), report->run_ids.size(), a.db.c_str());
  return 0;
}

}  // namespace

Runner add_experiment_command(CLI::App& sub) {
  auto a = std::make_shared<ExperimentArgs>();
  std::string list = "Experiments:\n";
  std::vector<std::string> names;
  for (const lab::ExperimentInfo& e : lab::experiments()) {
    list += "  " + e.name + std::string(e.name.size() < 18 ? 18 - e.name.size() : 1, ' ') + e.summary + "\n";
    names.push_back(e.name);
  }
  sub.footer(list + "Each stores its training runs (--db) and writes report.md with SVG figures to --out "
                    "(default reports/NAME). docs/experiments.md has the figures of a full run of each.");
  sub.add_option("name", a->name, "the experiment")->required()->check(CLI::IsMember(names));
  add_db_flag(sub, a->db, "the run store");
  sub.add_option("--out", a->out, "report folder (default reports/NAME)");
  sub.add_option("--seed", a->seed, "seed of every run (default 0)");
  sub.add_option("--steps", a->steps, "override every run's number of steps");
  sub.add_option("--threads", a->threads, "BLAS threads (default 1)");
  sub.add_flag("--quick", a->quick, "tiny models and a few steps: checks the pipeline in seconds, proves nothing");
  sub.add_flag("--quiet", a->quiet, "no progress on stderr");
  return [a] { return run_experiment_command(*a); };
}

}  // namespace blocklab::cli
