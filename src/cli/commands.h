// One file per subcommand: each registers its flags on its (sub)app and returns the function that
// runs it once the command line is parsed.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace blocklab::cli {

using Runner = std::function<int()>;  // returns the exit code
Runner add_forward_command(CLI::App& sub);
Runner add_backward_command(CLI::App& sub);
Runner add_init_command(CLI::App& sub);
Runner add_tokenize_command(CLI::App& sub);
Runner add_bench_command(CLI::App& sub);
Runner add_train_command(CLI::App& sub);
Runner add_gradflow_command(CLI::App& sub);
Runner add_runs_command(CLI::App& sub);
Runner add_export_command(CLI::App& sub);
Runner add_experiment_command(CLI::App& sub);
Runner add_serve_command(CLI::App& sub);
Runner add_users_command(CLI::App& sub);
Runner add_worker_command(CLI::App& sub);
Runner add_workers_command(CLI::App& sub);
Runner add_assistant_command(CLI::App& sub);

}  // namespace blocklab::cli
