// blocklab: the command line. Each subcommand lives in its own file (cmd_*.cpp).
#include <CLI/CLI.hpp>
#include <new>
#include <vector>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "engine/blas.h"

int main(int argc, char** argv) {
  using namespace blocklab::cli;
  CLI::App app{"BlockLab: a Transformer block stack you can inspect, forward and backward, exact against PyTorch.\n"
               "Model files are safetensors with PyTorch tensor names (docs/model-format.md)."};
  app.name("blocklab");
  app.require_subcommand(1, 1);
  app.set_version_flag("--version", "blocklab " BLOCKLAB_VERSION);
  struct Command {
    const char* name;
    const char* about;
    Runner (*add)(CLI::App&);
    CLI::App* sub = nullptr;
    Runner run;
  };
  std::vector<Command> commands = {
      {"forward", "run a model on an input; writes y (and every activation with --trace)", add_forward_command, nullptr, {}},
      {"backward", "gradients of sum(y * dy) for the input and every parameter", add_backward_command, nullptr, {}},
      {"init", "a new model file with PyTorch's default initialisation, deterministic per seed", add_init_command, nullptr, {}},
      {"tokenize", "GPT-2's tokenizer: the token ids of a text (or the text of ids)", add_tokenize_command, nullptr, {}},
      {"train", "train on a built-in task (copy, reverse, sort, chars) or your own data (--data); every run kept in the run store",
       add_train_command, nullptr, {}},
      {"runs", "the run store: list, show, export, compare", add_runs_command, nullptr, {}},
      {"export", "a checkpoint (or a run's) as a plain model file: parameters and config, no optimizer state",
       add_export_command, nullptr, {}},
      {"gradflow", "per-layer gradient norms and activation mean/std at initialisation", add_gradflow_command,
       nullptr, {}},
      {"experiment", "run one of the seed pages' claims as an experiment; stores its runs, writes a report",
       add_experiment_command, nullptr, {}},
      {"serve", "the HTTP API and the web app", add_serve_command, nullptr, {}},
      {"users", "the server's accounts: add, list, remove, set-role, block, class-code", add_users_command, nullptr, {}},
      {"worker", "train the store's queued jobs, serve nothing (several machines: docs/deploy.md)", add_worker_command,
       nullptr, {}},
      {"workers", "the processes training the store's jobs, and the queue", add_workers_command, nullptr, {}},
      {"assistant", "the learning assistant: ask a question, list the lessons, score the evaluation set",
       add_assistant_command, nullptr, {}},
      {"bench", "time the engine's kernels, blocks and a training step", add_bench_command, nullptr, {}},
  };
  for (Command& c : commands) {
    c.sub = app.add_subcommand(c.name, c.about);
    c.run = c.add(*c.sub);
  }
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const Command& c : commands) known = known || std::string(argv[1]) == c.name;
    if (!known) {
      std::string names;
      for (const Command& c : commands) names += std::string(names.empty() ? "" : " ") + c.name;
      return fail("", std::string("unknown command '") + argv[1] + "': expected one of " + names);
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::string where;
    for (const CLI::App* sub : app.get_subcommands()) where = sub->get_name();
    return fail(where, std::string(e.what()) + " (see --help)");
  }
  // BLOCKLAB_GEMM / BLOCKLAB_BF16 with a value neither names: refused, not ignored (engine/blas.h)
  if (const std::string bad = blocklab::gemm_environment_error(); !bad.empty()) return fail("", bad);
  try {
    for (Command& c : commands)
      if (c.sub->parsed()) return c.run();
  } catch (const std::bad_alloc&) {
    return fail("", "out of memory: expected smaller inputs");
  } catch (const std::exception& e) {  // a check missed upstream: still one line and status 2, never an abort
    return fail("", std::string("unexpected error: ") + e.what());
  }
  return fail("", "no command given (see --help)");
}
