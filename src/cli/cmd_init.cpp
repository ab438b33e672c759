// blocklab init [--config C.json] [model flags] --seed S --output M
#include <memory>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "io/model_file.h"

namespace blocklab::cli {

namespace {

struct InitArgs {
  ModelFlags flags;
  uint64_t seed = 0;
  std::string output;
};

int run_init(const InitArgs& a) {
  const std::string cmd = "init";
  Result<ModelConfig> config = resolve_model_config(a.flags);
  if (!config) return fail(cmd, config.status());
  Result<Model<float>> model = Model<float>::create(config.value());
  if (!model) return fail(cmd, model.status());
  init_parameters(model->layout(), a.seed, model->params().data());
  Status st = io::save_model(a.output, model.value());
  if (!st) return fail(cmd, st);
  return 0;
}

}  // namespace

Runner add_init_command(CLI::App& sub) {
  auto args = std::make_shared<InitArgs>();
  sub.footer(
      "Initialisation follows PyTorch's defaults for nn.TransformerEncoderLayer's modules (Linear: U(+-1/sqrt(fan_in));\n"
      "in_proj: Xavier uniform; attention biases 0; norms 1 and 0; Embedding: N(0, 1)), with each layer drawn\n"
      "independently. The same seed gives the same file.");
  add_model_flags(sub, args->flags, /*config_required=*/false);
  sub.add_option("--seed", args->seed, "random seed (default 0)");
  sub.add_option("--output", args->output, "model .safetensors to write")->required();
  return [args] { return run_init(*args); };
}

}  // namespace blocklab::cli
