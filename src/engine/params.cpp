#include "engine/params.h"

#include <cmath>

#include "engine/rng.h"

namespace blocklab {

ParamLayout::ParamLayout(const ModelConfig& c) : alpha_init_(c.residual_alpha) {
  const int64_t d = c.d_model, f = c.d_ff;
  const bool has_norm = c.norm != Norm::none;
  const bool has_bias = c.norm == Norm::layernorm;
  if (c.vocab_size) embed_weight_ = add("embed.weight", {*c.vocab_size, d});
  if (c.max_seq_len) pos_embed_weight_ = add("pos_embed.weight", {*c.max_seq_len, d});
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    BlockOffsets b;
    b.in_proj_weight = add(p + "self_attn.in_proj_weight", {3 * d, d});
    b.in_proj_bias = add(p + "self_attn.in_proj_bias", {3 * d});
    b.out_proj_weight = add(p + "self_attn.out_proj.weight", {d, d});
    b.out_proj_bias = add(p + "self_attn.out_proj.bias", {d});
    b.linear1_weight = add(p + "linear1.weight", {f, d});
    b.linear1_bias = add(p + "linear1.bias", {f});
    b.linear2_weight = add(p + "linear2.weight", {d, f});
    b.linear2_bias = add(p + "linear2.bias", {d});
    if (has_norm) {
      b.norm1_weight = add(p + "norm1.weight", {d});
      if (has_bias) b.norm1_bias = add(p + "norm1.bias", {d});
      b.norm2_weight = add(p + "norm2.weight", {d});
      if (has_bias) b.norm2_bias = add(p + "norm2.bias", {d});
    }
    if (c.alpha_learnable) b.alpha = add(p + "alpha", {1});
    blocks_.push_back(b);
  }
  if (c.final_norm) {
    final_norm_weight_ = add("norm.weight", {d});
    if (has_bias) final_norm_bias_ = add("norm.bias", {d});
  }
  if (c.vocab_size && !c.tied_head) {
    head_weight_ = add("head.weight", {*c.vocab_size, d});
    head_bias_ = add("head.bias", {*c.vocab_size});
  }
}

int64_t ParamLayout::add(std::string name, Shape shape) {
  ParamSpec spec{std::move(name), std::move(shape), total_};
  total_ += spec.numel();  // bounded: validate() checks parameter_count(config) <= kMaxParameters
  index_.emplace(spec.name, specs_.size());
  specs_.push_back(std::move(spec));
  return specs_.back().offset;
}

const ParamSpec* ParamLayout::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &specs_[it->second];
}

int64_t ParamLayout::layer_of(std::string_view name) {
  constexpr std::string_view prefix = "layers.";
  if (name.substr(0, prefix.size()) != prefix) return -1;
  int64_t i = 0;
  size_t pos = prefix.size();
  if (pos >= name.size() || name[pos] < '0' || name[pos] > '9') return -1;
  for (; pos < name.size() && name[pos] >= '0' && name[pos] <= '9'; ++pos) i = i * 10 + (name[pos] - '0');
  return i;
}

namespace {

uint64_t name_hash(std::string_view s) {  // FNV-1a
  uint64_t h = 0xcbf29ce484222325ull;
  for (char ch : s) h = (h ^ uint8_t(ch)) * 0x100000001b3ull;
  return h;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

// PyTorch's defaults for these modules:
// - nn.Linear: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))  (kaiming_uniform with a = sqrt 5)
// - nn.MultiheadAttention: in_proj_weight xavier_uniform, U(+-sqrt(6 / (d + 3d))); in_proj_bias and
//   out_proj.bias 0; out_proj.weight as nn.Linear
// - nn.LayerNorm / RMSNorm: weight 1, bias 0
// - nn.Embedding (tokens and positions): N(0, 1)
// - a learnable residual alpha (ReZero when it starts at 0): the config's residual_alpha
template <typename T>
void init_parameters(const ParamLayout& layout, uint64_t seed, T* params) {
  for (const ParamSpec& s : layout.specs()) {
    T* p = params + s.offset;
    const int64_t n = s.numel();
    Rng rng(seed ^ name_hash(s.name));
    auto uniform = [&](double bound) {
      for (int64_t i = 0; i < n; ++i) p[i] = T(rng.uniform(-bound, bound));
    };
    auto constant = [&](double v) {
      for (int64_t i = 0; i < n; ++i) p[i] = T(v);
    };
    const std::string& name = s.name;
    if (ends_with(name, ".alpha")) {
      constant(layout.alpha_init());
    } else if (ends_with(name, "in_proj_weight")) {
      uniform(std::sqrt(6.0 / double(s.shape[0] + s.shape[1])));
    } else if (ends_with(name, "in_proj_bias") || ends_with(name, "out_proj.bias")) {
      constant(0);
    } else if (name == "embed.weight" || name == "pos_embed.weight") {
      for (int64_t i = 0; i < n; ++i) p[i] = T(rng.normal());
    } else if (name == "norm.weight" || ends_with(name, "norm1.weight") || ends_with(name, "norm2.weight")) {
      constant(1);
    } else if (name == "norm.bias" || ends_with(name, "norm1.bias") || ends_with(name, "norm2.bias")) {
      constant(0);
    } else {  // nn.Linear weight [out, in] or bias [out]: fan_in is the weight's second axis
      const ParamSpec* weight = layout.find(ends_with(name, ".bias") ? name.substr(0, name.size() - 4) + "weight" : name);
      uniform(1.0 / std::sqrt(double(weight->shape[1])));
    }
  }
}

template void init_parameters<float>(const ParamLayout&, uint64_t, float*);
template void init_parameters<double>(const ParamLayout&, uint64_t, double*);

}  // namespace blocklab
