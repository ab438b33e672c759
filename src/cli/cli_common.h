// Shared by the subcommands: how an error leaves the program (exit 2, one line on stderr), the
// model flags of init/train/gradflow, and the --dtype switch.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/status.h"

namespace blocklab::cli {

constexpr int kExitUsage = 2;

// Prints "blocklab <command>: <message>" on one line and returns kExitUsage.
int fail(const std::string& command, const Status& status);
int fail(const std::string& command, const std::string& message);

// The contract's model flags; a --config file with the same keys may give them, flags win.
struct ModelFlags {
  std::string config_path;
  int64_t d_model = 0, n_heads = 0, d_ff = 0, n_layers = 0, vocab_size = 0, max_seq_len = 0;
  std::string norm, placement, activation, residual, alpha_learnable, final_norm, causal;
  double alpha = 0, eps = 0, dropout = 0;
  CLI::App* app = nullptr;
};
void add_model_flags(CLI::App& app, ModelFlags& flags, bool config_required);
// defaults <- --config file <- flags given on the command line; then validated.
Result<ModelConfig> resolve_model_config(const ModelFlags& flags);
// The model flags given on the command line ("--d-model", ...), --config included.
std::vector<std::string> given_model_flags(const ModelFlags& flags);
// Whether the --config file (if any) sets `key`.
bool given_in_config_file(const ModelFlags& flags, const std::string& key);

// --dtype f32|f64: the compute (and output) precision.
void add_dtype_flag(CLI::App& app, std::string& dtype);

// SIGINT and SIGTERM only raise a flag (delivered to whichever thread, the BLAS has its own); the
// command's own thread polls it and stops cleanly. Also ignores SIGPIPE, and SIGXFSZ (a full disk is an
// error to answer, not a signal that kills).
void install_stop_signals();
int stop_signal();  // the signal received, or 0

// --db: the store, an SQLite file (default blocklab.db) or a postgresql:// URL; `what` says what the
// command keeps there. With must_exist, a file path must name an existing file.
void add_db_flag(CLI::App& app, std::string& db, const std::string& what, bool must_exist = false);

}  // namespace blocklab::cli

#include "engine/model.h"
#include "engine/tensor.h"
#include "io/safetensors.h"

namespace blocklab::cli {

// The flags forward and backward share, and what they load from them.
struct ModelRunArgs {
  std::string model, input, output, config, dtype = "f32";
  int threads = 1;
  // Hooks (engine/model.h Hooks): --hook-patch NAME=FILE, --ablate NAME[:HEAD], and backward's --wrt NAME.
  std::vector<std::string> patches, ablations, wrt;
};
void add_model_run_flags(CLI::App& app, ModelRunArgs& args, const std::string& input_holds, bool with_wrt = false);

// Sets the hooks --hook-patch and --ablate ask for (and --wrt's gradients) on `model`, run on x or on tokens;
// nothing when none is given. The patch files are read here. An unbatched input ([T, d] or [T]) may have
// patches without the batch axis. Errors name the flag, the activation, expected vs got.
template <typename T>
Status set_hooks_from_flags(Model<T>& model, const ModelRunArgs& args, bool on_tokens, bool batched);
template <typename T>
struct ModelRun {
  Model<T> model;
  io::SafetensorsFile input;
  io::DType out_dtype;  // F32, or F64 with --dtype f64
};
// Checks --threads and sets it; loads the model (with --config replacing the file's config when given) and the
// input file.
template <typename T>
Result<ModelRun<T>> load_model_run(const ModelRunArgs& args);

// An activation input of the block stack: [B, T, d] or [T, d] (batched = false).
template <typename T>
struct StackInput {
  Tensor<T> x;
  int64_t batch = 0, seq_len = 0;
  bool batched = true;
};
// Reads tensor `name` from `file`, checks its shape against the model ([.., d_model]) and, when
// `like` is given, that it has exactly that shape.
template <typename T>
Result<StackInput<T>> read_stack_input(const io::SafetensorsFile& file, const std::string& where,
                                       const std::string& name, const ModelConfig& config,
                                       const Shape* like = nullptr);

// Token ids for a language model: [B, T] or [T].
struct TokenInput {
  std::vector<int32_t> ids;
  Shape shape;
  int64_t batch = 0, seq_len = 0;
  bool batched = true;
};
Result<TokenInput> read_token_input(const io::SafetensorsFile& file, const std::string& where,
                                    const std::string& name);

}  // namespace blocklab::cli
