#include "lab/training_run.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <filesystem>

#include "io/checkpoint.h"
#include "io/model_file.h"

namespace blocklab::lab {

std::string default_checkpoint_dir(const RunStore& store) {
  namespace fs = std::filesystem;
  if (Database::is_url(store.path())) return (fs::current_path() / "checkpoints").string();
  return (fs::absolute(store.path()).parent_path() / "checkpoints").string();
}

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

std::string default_checkpoint_path(const RunStore& store, int64_t run_id) {
  return (fs::path(default_checkpoint_dir(store)) / ("run-" + std::to_string(run_id) + ".safetensors")).string();
}

// Refuses a checkpoint path that cannot be written before any run is recorded.
Status check_writable(const std::string& path) {
  const fs::path dir = fs::absolute(path).parent_path();
  std::error_code ec;
  fs::create_directories(dir, ec);
  const fs::path probe = dir / (".blocklab-probe-" + std::to_string(::getpid()));
  FILE* f = std::fopen(probe.c_str(), "wb");
  if (!f) return Status::error(path + ": cannot write a checkpoint there (" + std::string(std::strerror(errno)) + ")");
  std::fclose(f);
  fs::remove(probe, ec);
  return Status::ok();
}

nlohmann::json train_state(int64_t run_id, const Trainer& t) {
  nlohmann::json j{{"run_id", run_id}, {"step", t.steps_done()}, {"options", to_json(t.options())}};
  if (!t.task().alphabet().empty()) j["alphabet"] = t.task().alphabet();  // chars, and text from a text file
  return j;
}

// The loop shared by a new run and a resumed one.
Result<TrainResult> train_loop(RunStore& store, Trainer& trainer, int64_t run_id, int64_t steps_total,
                               int64_t checkpoint_every, const std::string& checkpoint_path, const ProgressFn& on_step,
                               const std::atomic<bool>* cancel) {
  if (checkpoint_every <= 0) checkpoint_every = std::max<int64_t>(1, steps_total / 10);
  std::error_code ec;
  fs::create_directories(fs::absolute(checkpoint_path).parent_path(), ec);
  auto checkpoint = [&]() -> Status {
    Status st = io::save_checkpoint(checkpoint_path, trainer.model(), trainer.optimizer(), train_state(run_id, trainer));
    if (!st) {  // the run cannot go on without its checkpoints: record why it stopped
      (void)store.finish_run(run_id, "failed", std::nullopt, std::nullopt, 0, 0, st.message());
      return st;
    }
    return store.set_checkpoint(run_id, checkpoint_path, trainer.steps_done());
  };
  const TrainOptions& o = trainer.options();
  const auto start = clock_type::now();
  const int64_t first = trainer.steps_done();
  std::string status = "finished";
  std::vector<LayerGradNorm> layers;
  double wall = 0;
  while (trainer.steps_done() < steps_total) {
    if (cancel && cancel->load()) {
      status = "cancelled";
      break;
    }
    StepRecord rec = trainer.step(&layers);
    wall = std::chrono::duration<double>(clock_type::now() - start).count();
    rec.wall_s = wall;
    BLOCKLAB_RETURN_IF_ERROR(store.append_step(run_id, rec, layers));
    const double done = double(trainer.steps_done() - first);
    const double tps = wall > 0 ? done * double(o.batch * o.seq_len) / wall : 0;
    if (on_step)
      on_step({rec, layers, steps_total, tps, wall / done * double(steps_total - trainer.steps_done())});
    if (!std::isfinite(rec.loss)) {
      status = "diverged";
      break;
    }
    if (trainer.steps_done() % checkpoint_every == 0 && trainer.steps_done() < steps_total)
      BLOCKLAB_RETURN_IF_ERROR(checkpoint());
  }
  BLOCKLAB_RETURN_IF_ERROR(checkpoint());
  TrainResult result;
  result.run_id = run_id;
  result.config = trainer.model().config();
  result.options = o;
  result.status = status;
  result.checkpoint_path = checkpoint_path;
  result.wall_s = wall;
  result.tokens_per_s = wall > 0 ? double(trainer.steps_done() - first) * double(o.batch * o.seq_len) / wall : 0;
  std::optional<double> final_loss, final_accuracy;
  if (status != "diverged") {
    result.final = trainer.evaluate();
    final_loss = result.final.loss;
    final_accuracy = result.final.accuracy;
  } else {
    result.final = {NAN, NAN};
  }
  BLOCKLAB_RETURN_IF_ERROR(store.finish_run(run_id, status, final_loss, final_accuracy, wall, result.tokens_per_s));
  Result<std::vector<StepRecord>> history = store.steps(run_id);
  if (!history) return history.status();
  result.history = std::move(history.value());
  return result;
}

}  // namespace

RunRecord run_record(const TrainRunSpec& spec, const std::string& status) {
  RunRecord run;
  run.task = std::string(name_of(spec.options.task));
  run.experiment = spec.experiment;
  run.label = spec.label;
  run.config_json = io::config_to_json(spec.config).dump();
  run.options_json = to_json(spec.options).dump();
  run.seed = spec.options.seed;
  run.steps_total = spec.options.steps;
  run.pid = ::getpid();
  run.status = status;
  run.user_id = spec.user_id;
  return run;
}

Result<TrainResult> run_training(RunStore& store, const TrainRunSpec& spec, const ProgressFn& on_step,
                                 const std::atomic<bool>* cancel) {
  Result<Trainer> trainer = Trainer::create(spec.config, spec.options);
  if (!trainer) return spec.init_params.empty() ? trainer.status() : trainer.status().with_context(spec.init_from);
  if (!spec.init_params.empty()) {
    const ModelConfig& trained = trainer->model().config();
    if (trained != spec.init_config || trainer->model().params().size() != spec.init_params.size())
      return Status::error(spec.init_from + ": expected a model of the config the " + std::string(name_of(spec.options.task)) +
                           " task trains, " + io::config_to_json(trained).dump() + ", got " +
                           io::config_to_json(spec.init_config).dump());
    trainer->model().params() = spec.init_params;
  }
  if (!spec.checkpoint_path.empty()) BLOCKLAB_RETURN_IF_ERROR(check_writable(spec.checkpoint_path));
  Result<int64_t> id = spec.run_id;
  if (spec.run_id > 0) {
    BLOCKLAB_RETURN_IF_ERROR(store.resume_run(spec.run_id, 0, spec.options.steps, ::getpid()));
  } else {
    TrainRunSpec recorded = spec;
    recorded.config = trainer->model().config();  // with the task's vocabulary and positions
    recorded.options = trainer->options();        // with the data file's hash
    id = store.create_run(run_record(recorded, "running"));
    if (!id) return id.status();
  }
  const std::string path = !spec.checkpoint_path.empty() ? spec.checkpoint_path
                           : !spec.checkpoint_dir.empty()
                               ? (fs::path(spec.checkpoint_dir) / ("run-" + std::to_string(*id) + ".safetensors")).string()
                               : default_checkpoint_path(store, *id);
  return train_loop(store, trainer.value(), *id, spec.options.steps, spec.checkpoint_every, path, on_step, cancel);
}

Result<TrainResult> resume_training(RunStore& store, const std::string& checkpoint_path, int64_t steps_total,
                                    int64_t checkpoint_every, const ProgressFn& on_step,
                                    const std::atomic<bool>* cancel) {
  Result<io::Checkpoint> ck = io::load_checkpoint(checkpoint_path);
  if (!ck) return ck.status();
  const nlohmann::json& train = ck->train;
  if (!train.contains("run_id") || !train["run_id"].is_number_integer() || !train.contains("options"))
    return Status::error(checkpoint_path + ": \"blocklab.train\": expected run_id and options");
  const int64_t run_id = train["run_id"].get<int64_t>();
  const int64_t step = train["step"].get<int64_t>();
  Result<TrainOptions> options = train_options_from_json(train["options"]);
  if (!options) return options.status().with_context(checkpoint_path);
  Result<RunRecord> run = store.get_run(run_id);
  if (!run)
    return Status::error(checkpoint_path + ": run " + std::to_string(run_id) + " is not in " + store.path() +
                         ": expected the --db the run was stored in");
  if (steps_total <= 0) steps_total = options->steps;
  if (steps_total < step)
    return Status::error("--steps: expected at least the checkpoint's step " + std::to_string(step) + ", got " +
                         std::to_string(steps_total));
  options->steps = steps_total;
  Result<Trainer> trainer = Trainer::resume(std::move(ck->model), options.value(), step, std::move(ck->exp_avg),
                                            std::move(ck->exp_avg_sq));
  if (!trainer) return trainer.status().with_context(checkpoint_path);
  BLOCKLAB_RETURN_IF_ERROR(store.resume_run(run_id, step, steps_total, ::getpid()));
  return train_loop(store, trainer.value(), run_id, steps_total, checkpoint_every, checkpoint_path, on_step, cancel);
}

}  // namespace blocklab::lab
