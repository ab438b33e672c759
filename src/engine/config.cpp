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
constexpr ConfigKeyLimit kLimits[] = {
    {"d_model", 1, 65536, "the width of the residual stream"},
    {"n_heads", 1, 1024, "attention heads; must divide d_model"},
    {"d_ff", 1, 262144, "the FFN's hidden width"},
    {"n_layers", 1, 4096, "blocks in the stack"},
    {"vocab_size", 1, int64_t(1) << 20, "tokens of a language model (null: a block stack)"},
    {"max_seq_len", 1, int64_t(1) << 16, "positions of the learned position embedding (null: none)"},
};

const ConfigKeyLimit& limit_of(std::string_view key) {
  for (const ConfigKeyLimit& l : kLimits)
    if (l.key == key) return l;
  return kLimits[0];  // unreachable: every caller names a key of the table
}

// a * b + c... on int64 without overflow: false when it would overflow.
bool mul(int64_t a, int64_t b, int64_t* out) { return !__builtin_mul_overflow(a, b, out); }
bool add(int64_t a, int64_t b, int64_t* out) { return !__builtin_add_overflow(a, b, out); }

}  // namespace

std::span<const ConfigKeyLimit> config_key_limits() { return kLimits; }

Result<int64_t> parameter_count(const ModelConfig& c) {
  // As ParamLayout: per block in_proj [3d, d] + [3d], out_proj [d, d] + [d], linear1 [f, d] + [f],
  // linear2 [d, f] + [d], norms 2 x ([d] + [d]), alpha [1]; final norm; embed, pos_embed, head [V, d] + [V]
  // (none when tied).
  const int64_t d = c.d_model, f = c.d_ff;
  const bool has_norm = c.norm != Norm::none, has_bias = c.norm == Norm::layernorm;
  int64_t d2 = 0, df = 0, block = 0, total = 0, t = 0;
  bool ok = mul(d, d, &d2) && mul(d, f, &df) && mul(d2, 4, &block) && mul(df, 2, &t) && add(block, t, &block) &&
            add(block, 4 * d + f + d, &block);
  if (ok && has_norm) ok = add(block, (has_bias ? 4 : 2) * d, &block);
  if (ok && c.alpha_learnable) ok = add(block, 1, &block);
  ok = ok && mul(block, c.n_layers, &total);
  if (ok && c.final_norm) ok = add(total, (has_bias ? 2 : 1) * d, &total);
  if (ok && c.vocab_size) {  // embed [V, d]; an untied head adds [V, d] + [V]
    const int64_t V = *c.vocab_size;
    ok = mul(V, d, &t) && (c.tied_head || (mul(t, 2, &t) && add(t, V, &t))) && add(total, t, &total);
  }
  if (ok && c.max_seq_len) ok = mul(*c.max_seq_len, d, &t) && add(total, t, &total);
  if (!ok || total > kMaxParameters)
    return Status::error("config: the model would have " +
                         (ok ? std::to_string(total) : std::string("more than 2^63")) + " parameters: expected at most " +
                         std::to_string(kMaxParameters) + " (2^31; make d_model, d_ff, n_layers or vocab_size smaller)");
  return total;
}

Status validate(const ModelConfig& c) {
  auto bad = [](const std::string& key, const std::string& expected, const std::string& got) {
    return Status::error("config key '" + key + "': expected " + expected + ", got " + got);
  };
  // The engine's limits first (the relations below multiply and divide these).
  auto too_big = [&](std::string_view key, int64_t v) -> Status {
    const ConfigKeyLimit& l = limit_of(key);
    if (v <= l.max) return Status::ok();
    return bad(std::string(key), "an integer <= " + std::to_string(l.max) + " (the engine's limit: " + std::string(l.doc) + ")",
               std::to_string(v));
  };
  BLOCKLAB_RETURN_IF_ERROR(too_big("d_model", c.d_model));
  BLOCKLAB_RETURN_IF_ERROR(too_big("n_heads", c.n_heads));
  BLOCKLAB_RETURN_IF_ERROR(too_big("d_ff", c.d_ff));
  BLOCKLAB_RETURN_IF_ERROR(too_big("n_layers", c.n_layers));
  if (c.vocab_size) BLOCKLAB_RETURN_IF_ERROR(too_big("vocab_size", *c.vocab_size));
  if (c.max_seq_len) BLOCKLAB_RETURN_IF_ERROR(too_big("max_seq_len", *c.max_seq_len));
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
  if (c.tied_head && !c.vocab_size)
    return bad("tied_head", "false when vocab_size is null (the head belongs to the language model)", "true");
  if (c.norm == Norm::none && c.final_norm)
    return bad("final_norm", "false when norm is \"none\"", "true");
  Result<int64_t> n = parameter_count(c);  // the sizes are >= 1 and bounded here
  if (!n) return n.status();
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
