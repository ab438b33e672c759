#include "engine/config.h"

#include <cmath>
#include <cstdio>

namespace blocklab {

namespace {
std::string fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}
}  // namespace

Status validate(const ModelConfig& c) {
  auto bad = [](const std::string& key, const std::string& expected, const std::string& got) {
    return Status::error("config key '" + key + "': expected " + expected + ", got " + got);
  };
  if (c.d_model < 1) return bad("d_model", "an integer >= 1", std::to_string(c.d_model));
  if (c.n_heads < 1) return bad("n_heads", "an integer >= 1", std::to_string(c.n_heads));
  if (c.d_model % c.n_heads != 0)
    return bad("n_heads", "a divisor of d_model " + std::to_string(c.d_model), std::to_string(c.n_heads));
  if (c.d_ff < 1) return bad("d_ff", "an integer >= 1", std::to_string(c.d_ff));
  if (c.n_layers < 1) return bad("n_layers", "an integer >= 1", std::to_string(c.n_layers));
  if (!std::isfinite(c.residual_alpha)) return bad("residual_alpha", "a finite number", fmt(c.residual_alpha));
  if (!(c.eps > 0) || !std::isfinite(c.eps)) return bad("eps", "a finite number > 0", fmt(c.eps));
  if (!(c.dropout >= 0 && c.dropout < 1)) return bad("dropout", "a number in [0, 1)", fmt(c.dropout));
  if (c.vocab_size && *c.vocab_size < 1)
    return bad("vocab_size", "null or an integer >= 1", std::to_string(*c.vocab_size));
  if (c.alpha_learnable && !c.residual)
    return bad("alpha_learnable", "false when residual is false (there is no alpha without a residual)", "true");
  if (c.max_seq_len && *c.max_seq_len < 1)
    return bad("max_seq_len", "null or an integer >= 1", std::to_string(*c.max_seq_len));
  if (c.max_seq_len && !c.vocab_size)
    return bad("max_seq_len", "null when vocab_size is null (positions belong to the language model)",
               std::to_string(*c.max_seq_len));
  if (c.norm == Norm::none && c.final_norm)
    return bad("final_norm", "false when norm is \"none\"", "true");
  return Status::ok();
}

std::string_view name_of(Norm v) {
  switch (v) {
    case Norm::layernorm: return "layernorm";
    case Norm::rmsnorm: return "rmsnorm";
    case Norm::none: return "none";
  }
  return "?";
}
std::string_view name_of(Placement v) { return v == Placement::pre ? "pre" : "post"; }
std::string_view name_of(Activation v) {
  switch (v) {
    case Activation::relu: return "relu";
    case Activation::gelu: return "gelu";
    case Activation::gelu_tanh: return "gelu_tanh";
  }
  return "?";
}

std::optional<Norm> parse_norm(std::string_view s) {
  for (Norm v : {Norm::layernorm, Norm::rmsnorm, Norm::none})
    if (s == name_of(v)) return v;
  return std::nullopt;
}
std::optional<Placement> parse_placement(std::string_view s) {
  for (Placement v : {Placement::pre, Placement::post})
    if (s == name_of(v)) return v;
  return std::nullopt;
}
std::optional<Activation> parse_activation(std::string_view s) {
  for (Activation v : {Activation::relu, Activation::gelu, Activation::gelu_tanh})
    if (s == name_of(v)) return v;
  return std::nullopt;
}

}  // namespace blocklab
