// Where every parameter lives. All parameters of a model sit in one flat buffer (and their
// gradients, and AdamW's moments, in buffers of the same layout), so the optimizer is one loop and
// the model file is one table. Names and order follow PyTorch's state_dict() for
// nn.TransformerEncoder(batch_first=True), plus embed/norm/head for the language model
// (docs/model-format.md).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/config.h"
#include "engine/tensor.h"

namespace blocklab {

struct ParamSpec {
  std::string name;  // PyTorch name, e.g. "layers.0.linear1.weight"
  Shape shape;
  int64_t offset = 0;  // into the flat buffer, in elements
  int64_t numel() const { return numel_of(shape); }
};

// Offsets of one block's parameters in the flat buffer; -1 where the config has none
// (RMSNorm has no bias; norm "none" has no norm tensors).
struct BlockOffsets {
  int64_t in_proj_weight = -1, in_proj_bias = -1;    // [3d, d], [3d]
  int64_t out_proj_weight = -1, out_proj_bias = -1;  // [d, d], [d]
  int64_t linear1_weight = -1, linear1_bias = -1;    // [d_ff, d], [d_ff]
  int64_t linear2_weight = -1, linear2_bias = -1;    // [d, d_ff], [d]
  int64_t norm1_weight = -1, norm1_bias = -1;        // [d], [d]
  int64_t norm2_weight = -1, norm2_bias = -1;        // [d], [d]
  int64_t alpha = -1;                                 // [1], with alpha_learnable
};

class ParamLayout {
 public:
  ParamLayout() = default;
  // REQUIRES: validate(config).is_ok()
  explicit ParamLayout(const ModelConfig& config);

  const std::vector<ParamSpec>& specs() const { return specs_; }
  int64_t total() const { return total_; }  // elements in the flat buffer
  const ParamSpec* find(std::string_view name) const;  // O(1)

  const BlockOffsets& block(int64_t i) const { return blocks_[size_t(i)]; }
  int64_t final_norm_weight() const { return final_norm_weight_; }  // -1 if none
  int64_t final_norm_bias() const { return final_norm_bias_; }
  int64_t embed_weight() const { return embed_weight_; }  // language model only
  int64_t pos_embed_weight() const { return pos_embed_weight_; }  // with max_seq_len
  int64_t head_weight() const { return head_weight_; }  // -1 with tied_head (the head is embed.weight)
  int64_t head_bias() const { return head_bias_; }
  double alpha_init() const { return alpha_init_; }  // the value learnable alphas start from

  // The block a parameter belongs to (its "layers.{i}." prefix), or -1.
  static int64_t layer_of(std::string_view name);

 private:
  int64_t add(std::string name, Shape shape);

  std::vector<ParamSpec> specs_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in specs_
  int64_t total_ = 0;
  std::vector<BlockOffsets> blocks_;
  int64_t final_norm_weight_ = -1, final_norm_bias_ = -1;
  int64_t embed_weight_ = -1, pos_embed_weight_ = -1, head_weight_ = -1, head_bias_ = -1;
  double alpha_init_ = 1.0;
};

// One parameter's values (or gradient, or moment) copied out of a flat buffer of `layout`.
template <typename T>
Tensor<T> param_tensor(const ParamSpec& spec, const std::vector<T>& flat) {
  return Tensor<T>(spec.shape, std::vector<T>(flat.begin() + spec.offset, flat.begin() + spec.offset + spec.numel()));
}

// Fills a flat parameter buffer with PyTorch's default initialisation scheme for these modules
// (docs/model-format.md), deterministically from `seed`. Each tensor draws from its own stream,
// keyed by its name, so the same seed gives the same weights to the tensors two configs share.
template <typename T>
void init_parameters(const ParamLayout& layout, uint64_t seed, T* params);

}  // namespace blocklab
