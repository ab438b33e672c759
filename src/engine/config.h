// The model's configuration: the contract's `blocklab.config` keys (docs/model-format.md).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "engine/status.h"

namespace blocklab {

enum class Norm { layernorm, rmsnorm, none };
enum class Placement { pre, post };  // pre: x + f(N(x)); post: N(x + f(x))
enum class Activation { relu, gelu, gelu_tanh };

struct ModelConfig {
  int64_t d_model = 64;
  int64_t n_heads = 4;
  int64_t d_ff = 256;
  int64_t n_layers = 2;
  Norm norm = Norm::layernorm;
  Placement placement = Placement::pre;
  Activation activation = Activation::gelu;
  bool residual = true;
  double residual_alpha = 1.0;  // y = x + alpha * f(.) in both sub-layers
  bool alpha_learnable = false;  // alpha is a parameter per block (layers.{i}.alpha), initialised to residual_alpha
  double eps = 1e-5;
  bool final_norm = false;
  bool causal = false;
  std::optional<int64_t> vocab_size;  // set: a language model (embedding + head)
  // Language model only: a learned positional embedding (pos_embed.weight [max_seq_len, d], added to
  // the token embedding, as GPT-2's wpe) for sequences up to this length. null: none (the contract's
  // model, which cannot tell positions apart without a causal mask).
  std::optional<int64_t> max_seq_len;
  // Language model only: the head is the token embedding, logits = y embed.weight^T, with no head.weight
  // and no head.bias (GPT-2's tied lm_head). false: the contract's head.weight [V, d] and head.bias [V].
  bool tied_head = false;
  double dropout = 0.0;               // training only; forward/backward never apply it

  int64_t d_head() const { return d_model / n_heads; }
  bool is_language_model() const { return vocab_size.has_value(); }
  bool operator==(const ModelConfig&) const = default;
};

// The engine's bounds on a config's sizes (docs/model-format.md, "Limits"): one row per integer key,
// checked by validate() before anything is allocated, so that a hostile file cannot make the engine
// allocate gigabytes or overflow an offset. The server's API limits (server/api_input.h) are stricter.
struct ConfigKeyLimit {
  std::string_view key;
  int64_t min, max;
  std::string_view doc;
};
std::span<const ConfigKeyLimit> config_key_limits();
// The most parameters a model may have (2^31: 8 GiB of float32, and every offset fits a 32-bit int).
inline constexpr int64_t kMaxParameters = int64_t(1) << 31;

// The number of parameters of `config` (ParamLayout's total), computed with overflow-checked
// arithmetic; an error naming the count when it exceeds kMaxParameters. Does not check the other keys.
Result<int64_t> parameter_count(const ModelConfig& config);

// Checks the values against the limits and against each other; the message names the key, expected vs got.
Status validate(const ModelConfig& config);

std::string_view name_of(Norm v);
std::string_view name_of(Placement v);
std::string_view name_of(Activation v);
std::optional<Norm> parse_norm(std::string_view s);
std::optional<Placement> parse_placement(std::string_view s);
std::optional<Activation> parse_activation(std::string_view s);

}  // namespace blocklab
