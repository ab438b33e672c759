// blocklab train [model flags] --task copy|reverse|sort|chars|text [--data FILE] --steps N ... [--db F] [--save M] [--resume M] [--json]
#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "engine/blas.h"
#include "io/model_file.h"
#include "lab/training_run.h"

namespace blocklab::cli {

namespace {

std::atomic<bool> g_cancel{false};

extern "C" void on_sigint(int) {
  g_cancel.store(true);
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C stops at once
}

struct TrainArgs {
  ModelFlags model;
  std::string task = "copy", optimizer = "adamw", precision = "f32", db = "blocklab.db", save, resume, init, label, data;
  double held_out = 0.1;
  int64_t steps = 200, batch = 32, seq_len = 20, warmup = 0, grad_norm_every = 10, checkpoint_every = 0;
  double lr = 1e-3, weight_decay = 0, clip = 0;
  uint64_t seed = 0;
  int threads = 1;
  bool json = false, quiet = false;
  CLI::App* app = nullptr;
};

nlohmann::json result_json(const lab::TrainResult& r, const std::string& db) {
  nlohmann::json history = nlohmann::json::array();
  for (const lab::StepRecord& s : r.history)
    history.push_back({{"step", s.step}, {"loss", s.loss}, {"accuracy", s.accuracy}});
  return {{"run_id", r.run_id},
          {"status", r.status},
          {"config", io::config_to_json(r.config)},
          {"options", lab::to_json(r.options)},
          {"steps", r.history.empty() ? 0 : r.history.back().step},
          {"final", {{"loss", r.final.loss}, {"accuracy", r.final.accuracy}}},
          {"history", history},
          {"wall_s", r.wall_s},
          {"tokens_per_s", r.tokens_per_s},
          {"matmuls", r.options.precision == MatmulPrecision::bf16 ? "bf16, " + bf16_support().how
                                                                   : "f32 on " + gemm_choice().how},
          {"checkpoint", r.checkpoint_path},
          {"db", db}};
}

int run_train(const TrainArgs& a) {
  const std::string cmd = "train";
  if (a.threads < 1) return fail(cmd, "--threads: expected an integer >= 1, got " + std::to_string(a.threads));
  set_blas_threads(a.threads);
  Result<std::unique_ptr<lab::RunStore>> store = lab::RunStore::open(a.db);
  if (!store) return fail(cmd, store.status());

  std::unique_ptr<ProgressPrinter> progress;
  lab::ProgressFn on_step = [&](const lab::TrainProgress& p) { progress->update(p); };
  g_cancel.store(false);
  std::signal(SIGINT, on_sigint);
  Result<lab::TrainResult> result = Status::error("unset");
  if (!a.resume.empty()) {
    // A resumed run keeps its model and options; only the length and where things go may change.
    for (const char* flag : {"--task", "--batch", "--seq-len", "--lr", "--warmup", "--weight-decay", "--clip", "--seed",
                             "--optimizer", "--grad-norm-every", "--save", "--label", "--precision", "--data",
                             "--held-out"})
      if (a.app->count(flag))
        return fail(cmd, std::string(flag) + ": a resumed run keeps the options in its checkpoint; expected only "
                                             "--steps, --db, --checkpoint-every, --threads, --json with --resume");
    for (const std::string& flag : given_model_flags(a.model))
      return fail(cmd, flag + ": a resumed run keeps its model; expected no model flags with --resume");
    const int64_t steps = a.app->count("--steps") ? a.steps : 0;
    progress = std::make_unique<ProgressPrinter>(steps, a.quiet);
    result = lab::resume_training(*store.value(), a.resume, steps, a.checkpoint_every, on_step, &g_cancel);
  } else {
    lab::TrainRunSpec spec;
    std::optional<lab::TaskKind> task = lab::parse_task(a.task);
    if (!a.data.empty()) {  // the user's own data: the text task
      if (a.app->count("--task") && *task != lab::TaskKind::text)
        return fail(cmd, "--task: expected text (or no --task) with --data, got " + a.task);
      task = lab::TaskKind::text;
      spec.options.data.path = std::filesystem::absolute(a.data).string();  // a resumed run finds it from anywhere
      spec.options.data.held_out = a.held_out;
    } else if (*task == lab::TaskKind::text) {
      return fail(cmd, "--task text: expected --data FILE (a text file, or token ids in .npy or .safetensors)");
    } else if (a.app->count("--held-out")) {
      return fail(cmd, "--held-out: expected --data FILE with it (the built-in tasks draw their own held-out batches)");
    }
    spec.options.task = *task;
    if (!a.init.empty()) {
      // Fine-tuning: the model file's config and parameters; the seed still draws the batches (and dropout).
      for (const std::string& flag : given_model_flags(a.model))
        return fail(cmd, flag + ": a fine-tuned run keeps the config of its --init model; expected no model flags with --init");
      Result<Model<float>> init = io::load_model<float>(a.init);
      if (!init) return fail(cmd, init.status().with_context("--init"));
      spec.config = init->config();
      spec.init_config = init->config();
      spec.init_params = init->params();
      spec.init_from = "--init " + a.init;
      if (a.label.empty()) spec.label = "fine-tuned from " + a.init;
    } else {
      ModelFlags flags = a.model;
      Result<ModelConfig> config = resolve_model_config(flags);
      if (!config) return fail(cmd, config.status());
      spec.config = config.value();
      // chars and text predict the next token: causal unless the user said otherwise (then it is refused).
      if ((*task == lab::TaskKind::chars || *task == lab::TaskKind::text) && !a.model.app->count("--causal") &&
          !given_in_config_file(a.model, "causal"))
        spec.config.causal = true;
    }
    spec.options.steps = a.steps;
    spec.options.batch = a.batch;
    spec.options.seq_len = a.seq_len;
    spec.options.optimizer.kind = a.optimizer == "adam" ? OptimizerConfig::Kind::adam : OptimizerConfig::Kind::adamw;
    spec.options.optimizer.lr = a.lr;
    spec.options.optimizer.weight_decay = a.weight_decay;
    spec.options.optimizer.warmup_steps = a.warmup;
    spec.options.optimizer.clip_norm = a.clip;
    spec.options.seed = a.seed;
    spec.options.grad_norm_every = a.grad_norm_every;
    spec.options.precision = *parse_precision(a.precision);  // CLI11 checked the name
    if (!a.label.empty()) spec.label = a.label;
    spec.checkpoint_path = a.save;
    spec.checkpoint_every = a.checkpoint_every;
    if (Status st = lab::validate(spec.options); !st) return fail(cmd, st);
    progress = std::make_unique<ProgressPrinter>(a.steps, a.quiet);
    result = lab::run_training(*store.value(), spec, on_step, &g_cancel);
  }
  std::signal(SIGINT, SIG_DFL);
  if (progress) progress->finish();
  if (!result) return fail(cmd, result.status());
  const lab::TrainResult& r = result.value();
  if (a.json) {
    std::cout << result_json(r, a.db).dump() << std::endl;
  } else {
    std::printf("run %lld %s after %lld steps: held-out loss %.4f, accuracy %.2f%%; %.1f s, %.0f tokens/s\n",
                (long long)r.run_id, r.status.c_str(), (long long)(r.history.empty() ? 0 : r.history.back().step),
                r.final.loss, 100 * r.final.accuracy, r.wall_s, r.tokens_per_s);
    if (r.options.precision == MatmulPrecision::bf16) std::printf("matmuls in bf16, %s\n", bf16_support().how.c_str());
    else std::printf("matmuls in f32 on %s\n", gemm_choice().how.c_str());
    std::printf("checkpoint: %s (resume with --resume; a model file for forward/backward)\n", r.checkpoint_path.c_str());
  }
  return r.status == "cancelled" ? 130 : 0;
}

}  // namespace

Runner add_train_command(CLI::App& sub) {
  auto a = std::make_shared<TrainArgs>();
  a->app = &sub;
  sub.footer(
      "Trains the language model (embedding -> blocks -> final norm -> head) on a built-in task and records the run\n"
      "(config, seed, every step, per-layer gradient norms, final figures, checkpoint) in the run store (--db).\n"
      "copy: vocabulary 10, inputs from tokens 0..4, target = input (the seeds' task). reverse, sort: vocabulary 10.\n"
      "chars: next-character prediction on a small public-domain text (causal). text (--data FILE): next-token\n"
      "prediction on your own data: a text file (its bytes are the tokens), or token ids in a .npy or .safetensors\n"
      "file (vocabulary: the largest id + 1); the last --held-out of it is kept for the final figures. Checkpoints are model files;\n"
      "--resume continues a run exactly; --init fine-tunes a model file as a new run. Ctrl-C stops after the current\n"
      "step and checkpoints (exit 130).");
  add_model_flags(sub, a->model, /*config_required=*/false);
  sub.add_option("--task", a->task, "copy|reverse|sort|chars|text (default copy; text with --data)")
      ->check(CLI::IsMember({"copy", "reverse", "sort", "chars", "text"}));
  sub.add_option("--data", a->data,
                 "train on this file (the text task): text (bytes are tokens), or token ids in .npy / .safetensors")
      ->check(CLI::ExistingFile);
  sub.add_option("--held-out", a->held_out,
                 "with --data: the fraction at the end of the data kept out of training, for the final figures "
                 "(default 0.1, at most 0.5)");
  sub.add_option("--steps", a->steps, "total optimizer steps (default 200)");
  sub.add_option("--batch", a->batch, "sequences per step (default 32)");
  sub.add_option("--seq-len", a->seq_len, "tokens per sequence (default 20)");
  sub.add_option("--lr", a->lr, "learning rate (default 1e-3)");
  sub.add_option("--warmup", a->warmup, "linear warm-up steps: step t uses lr * min(1, t / warmup) (default 0)");
  sub.add_option("--weight-decay", a->weight_decay, "weight decay (default 0)");
  sub.add_option("--clip", a->clip, "clip the gradient's global L2 norm to this (default 0: off)");
  sub.add_option("--optimizer", a->optimizer, "adamw (decoupled decay) or adam (L2 in the gradient) (default adamw)")
      ->check(CLI::IsMember({"adamw", "adam"}));
  sub.add_option("--precision", a->precision,
                 "f32, or bf16: the matmuls' inputs rounded to bfloat16, float32 accumulation and master weights;\n"
                 "native on CPUs with AVX512-BF16 or AMX (oneDNN), else emulated: same numbers, no speed (default f32)")
      ->check(CLI::IsMember({"f32", "bf16"}));
  sub.add_option("--seed", a->seed, "seed of the initialisation, batches and dropout (default 0)");
  sub.add_option("--grad-norm-every", a->grad_norm_every, "record per-layer gradient norms every k steps (default 10)");
  sub.add_option("--checkpoint-every", a->checkpoint_every, "checkpoint every k steps (default: steps / 10)");
  sub.add_option("--threads", a->threads, "BLAS threads (default 1)");
  add_db_flag(sub, a->db, "the run store");
  sub.add_option("--save", a->save, "checkpoint path (default: checkpoints/run-<id>.safetensors beside the store)");
  sub.add_option("--resume", a->resume, "continue the run of this checkpoint (up to --steps)")->check(CLI::ExistingFile);
  sub.add_option("--init", a->init,
                 "fine-tune: start from this model file's parameters and config (a new run, a fresh optimizer; "
                 "`blocklab export` makes one from a checkpoint)")
      ->check(CLI::ExistingFile)
      ->excludes("--resume");
  sub.add_option("--label", a->label, "a short name for the run");
  sub.add_flag("--json", a->json, "print the run record as JSON on stdout when done (progress stays on stderr)");
  sub.add_flag("--quiet", a->quiet, "no progress on stderr");
  return [a] { return run_train(*a); };
}

}  // namespace blocklab::cli
