// blocklab export RUN|CHECKPOINT --output M [--db F]
// A training checkpoint (or a run's last one, by id) as a plain model file: the parameters under PyTorch's names
// and the config, without the optimizer's moments or the training state, so that PyTorch loads it with
// load_state_dict(strict=True) and `train --init` fine-tunes it.
#include <cctype>
#include <memory>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "io/model_file.h"
#include "lab/run_store.h"

namespace blocklab::cli {

namespace {

struct ExportArgs {
  std::string source, output, db = "blocklab.db";
};

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 18) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

int run_export(const ExportArgs& a) {
  const std::string cmd = "export";
  std::string path = a.source;
  if (all_digits(a.source)) {  // a run id: its checkpoint, as the store has it
    Result<std::unique_ptr<lab::RunStore>> store = lab::RunStore::open(a.db);
    if (!store) return fail(cmd, store.status());
    Result<lab::RunRecord> run = store.value()->get_run(std::stoll(a.source));
    if (!run) return fail(cmd, run.status());
    if (run->checkpoint_path.empty())
      return fail(cmd, "run " + a.source + ": expected a run with a checkpoint, got none (status " + run->status + ")");
    path = run->checkpoint_path;
  }
  Result<Model<float>> model = io::load_model<float>(path);
  if (!model) return fail(cmd, model.status());
  if (Status st = io::save_model(a.output, model.value()); !st) return fail(cmd, st);
  return 0;
}

}  // namespace

Runner add_export_command(CLI::App& sub) {
  auto a = std::make_shared<ExportArgs>();
  sub.footer(
      "SOURCE is a checkpoint file (train's --save, or checkpoints/run-<id>.safetensors) or a run id of the store.\n"
      "The output holds the parameters (F32, PyTorch's names) and blocklab.config only: no optimizer.* tensors and\n"
      "no training state. A plain model file exports as itself.");
  sub.add_option("source", a->source, "a checkpoint path, or a run id")->required();
  sub.add_option("--output", a->output, "the model file to write")->required();
  add_db_flag(sub, a->db, "the run store (when SOURCE is a run id)", /*must_exist=*/true);
  return [a] { return run_export(*a); };
}

}  // namespace blocklab::cli
