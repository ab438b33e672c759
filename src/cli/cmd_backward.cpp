// blocklab backward --model M --input X --output G [--dtype f32|f64] [--config C.json] [--threads N]
//                   [--wrt NAME]... [--hook-patch NAME=FILE]... [--ablate NAME[:HEAD]]...
#include <memory>

#include "cli/cli_common.h"
#include "cli/commands.h"

namespace blocklab::cli {

namespace {

template <typename T>
int run_backward(const ModelRunArgs& a) {
  const std::string cmd = "backward";
  Result<ModelRun<T>> loaded = load_model_run<T>(a);
  if (!loaded) return fail(cmd, loaded.status());
  auto& [model, input, out_dtype] = loaded.value();
  const ModelConfig& cfg = model.config();

  io::SafetensorsFile out;
  model.zero_grads();
  const bool on_tokens = cfg.is_language_model() && input.find("tokens");
  bool batched = true;
  if (on_tokens) {
    // loss = mean cross-entropy of the logits against targets
    Result<TokenInput> tokens = read_token_input(input, a.input, "tokens");
    if (!tokens) return fail(cmd, tokens.status());
    batched = tokens->batched;
    if (Status st = set_hooks_from_flags(model, a, on_tokens, batched); !st) return fail(cmd, st);
    Result<TokenInput> targets = read_token_input(input, a.input, "targets");
    if (!targets) return fail(cmd, targets.status());
    if (targets->shape != tokens->shape)
      return fail(cmd, a.input + ": tensor 'targets': expected shape " + shape_str(tokens->shape) + " (as tokens), got " +
                           shape_str(targets->shape));
    Status st = model.forward_lm(tokens->ids.data(), targets->ids.data(), tokens->batch, tokens->seq_len);
    if (!st) return fail(cmd, st.with_context(a.input));
    model.backward_lm();
    out.add(io::from_float_tensor("loss", Tensor<T>(Shape{}, std::vector<T>{T(model.loss())}), out_dtype));
  } else {
    // loss = sum(y * dy)
    Result<StackInput<T>> x = read_stack_input<T>(input, a.input, "x", cfg);
    if (!x) return fail(cmd, x.status());
    Result<StackInput<T>> dy = read_stack_input<T>(input, a.input, "dy", cfg, &x->x.shape);
    if (!dy) return fail(cmd, dy.status());
    batched = x->batched;
    if (Status st = set_hooks_from_flags(model, a, on_tokens, batched); !st) return fail(cmd, st);
    Status st = model.forward(x->x.ptr(), x->batch, x->seq_len);
    if (!st) return fail(cmd, st.with_context(a.input));
    Tensor<T> dx(x->x.shape);
    model.backward(dy->x.ptr(), dx.ptr());
    out.add(io::from_float_tensor("grad.x", dx, out_dtype));
  }
  for (const ParamSpec& spec : model.layout().specs())
    out.add(io::from_float_tensor("grad." + spec.name, param_tensor(spec, model.grads()), out_dtype));
  for (const std::string& name : a.wrt) {
    const Tensor<T>* g = model.activation_grad(name);
    if (!g) return fail(cmd, "--wrt " + name + ": this run does not compute it (hook_embed and hook_pos_embed need tokens)");
    Shape shape = g->shape;
    if (!batched) shape.erase(shape.begin());  // as the input: no batch axis
    out.add(io::from_float_tensor("grad." + name, Tensor<T>(shape, g->data), out_dtype));
  }
  Status st = io::write_safetensors(a.output, out);
  if (!st) return fail(cmd, st);
  return 0;
}

}  // namespace

Runner add_backward_command(CLI::App& sub) {
  auto args = std::make_shared<ModelRunArgs>();
  sub.footer(
      "The input file holds x and dy (the shape of y); loss = sum(y * dy). The output gets grad.x and\n"
      "grad.<name> for every parameter <name> of the model.\n"
      "A language model also takes tokens and targets (integer ids [B, T] or [T]); loss = mean cross-entropy,\n"
      "written as `loss` beside the parameter gradients.\n"
      "--wrt NAME adds grad.NAME, the gradient of an activation (docs/trace.md). With --hook-patch or --ablate the\n"
      "backward runs through the patched forward: a changed element is a constant there (docs/hooks.md).");
  add_model_run_flags(sub, *args, "x and dy (or tokens and targets)", /*with_wrt=*/true);
  return [args] { return args->dtype == "f64" ? run_backward<double>(*args) : run_backward<float>(*args); };
}

}  // namespace blocklab::cli
