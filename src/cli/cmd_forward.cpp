// blocklab forward --model M --input X --output Y [--trace] [--dtype f32|f64] [--config C.json] [--threads N]
//                  [--hook-patch NAME=FILE]... [--ablate NAME[:HEAD]]...
#include <memory>

#include "cli/cli_common.h"
#include "cli/commands.h"

namespace blocklab::cli {

namespace {

struct ForwardArgs {
  ModelRunArgs run;
  bool trace = false;
};

template <typename T>
int run_forward(const ForwardArgs& a) {
  const std::string cmd = "forward";
  Result<ModelRun<T>> loaded = load_model_run<T>(a.run);
  if (!loaded) return fail(cmd, loaded.status());
  auto& [model, input, out_dtype] = loaded.value();
  const ModelConfig& cfg = model.config();

  io::SafetensorsFile out;
  bool batched = true;
  const bool on_tokens = cfg.is_language_model() && input.find("tokens");
  if (on_tokens) {
    Result<TokenInput> tokens = read_token_input(input, a.run.input, "tokens");
    if (!tokens) return fail(cmd, tokens.status());
    if (Status st = set_hooks_from_flags(model, a.run, on_tokens, tokens->batched); !st) return fail(cmd, st);
    Status st = model.forward_lm(tokens->ids.data(), nullptr, tokens->batch, tokens->seq_len);
    if (!st) return fail(cmd, st.with_context(a.run.input));
    batched = tokens->batched;
    Shape y_shape = tokens->shape, logits_shape = tokens->shape;
    y_shape.push_back(cfg.d_model);
    logits_shape.push_back(*cfg.vocab_size);
    out.add(io::from_float_tensor("y", Tensor<T>(y_shape, model.output().data), out_dtype));
    out.add(io::from_float_tensor("logits", Tensor<T>(logits_shape, model.logits().data), out_dtype));
  } else {
    Result<StackInput<T>> in = read_stack_input<T>(input, a.run.input, "x", cfg);
    if (!in) return fail(cmd, in.status());
    if (Status st = set_hooks_from_flags(model, a.run, on_tokens, in->batched); !st) return fail(cmd, st);
    Status st = model.forward(in->x.ptr(), in->batch, in->seq_len);
    if (!st) return fail(cmd, st.with_context(a.run.input));
    batched = in->batched;
    out.add(io::from_float_tensor("y", Tensor<T>(in->x.shape, model.output().data), out_dtype));
  }
  if (a.trace)
    for (const NamedTensor<T>& t : model.trace(batched)) out.add(io::from_float_tensor(t.name, t.tensor, out_dtype));
  Status st = io::write_safetensors(a.run.output, out);
  if (!st) return fail(cmd, st);
  return 0;
}

}  // namespace

Runner add_forward_command(CLI::App& sub) {
  auto args = std::make_shared<ForwardArgs>();
  sub.footer(
      "The input file holds x, float [B, T, d_model] or [T, d_model]; the output gets y of the same shape.\n"
      "A language model (vocab_size set) also takes tokens, integer ids [B, T] or [T], and writes y and logits.\n"
      "--trace adds every activation under its hook name (docs/trace.md).\n"
      "--hook-patch and --ablate change activations while the model runs (docs/hooks.md); what comes after them\n"
      "sees the changed values, and --trace shows them.");
  add_model_run_flags(sub, args->run, "x (or tokens)");
  sub.add_flag("--trace", args->trace, "also write every activation (blocks.{i}.hook_*, ...)");
  return [args] { return args->run.dtype == "f64" ? run_forward<double>(*args) : run_forward<float>(*args); };
}

}  // namespace blocklab::cli
