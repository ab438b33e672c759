// The model: a stack of Transformer blocks (optionally with a final norm), and the language-model
// wrapper around it (embedding -> blocks -> final norm -> head -> cross-entropy). It composes the
// kernels of kernels.h and keeps every activation of the last forward, for backward() and trace().
//
// One block, with N(.) the configured norm (identity for "none") and r(x, f) = x + alpha * f
// (or f when the residual is off):
//   pre : mid = r(x, Attn(N1(x)))      out = r(mid, FFN(N2(mid)))
//   post: mid = N1(r(x, Attn(x)))      out = N2(r(mid, FFN(mid)))
// FFN(x) = act(x W1^T + b1) W2^T + b2; Attn is multi-head self-attention with PyTorch's fused
// in_proj. Dropout (training only) follows nn.TransformerEncoderLayer: on the attention pattern,
// on each sub-layer's output, and on the FFN's hidden layer.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/params.h"
#include "engine/status.h"
#include "engine/tensor.h"

namespace blocklab {

struct ForwardOptions {
  bool training = false;       // applies dropout (config.dropout > 0) when true
  uint64_t dropout_seed = 0;   // masks are a function of (seed, layer, site): reproducible
};

template <typename T>
struct NamedTensor {
  std::string name;
  Tensor<T> tensor;
};

// Hooks (TransformerLens's run_with_cache / run_with_hooks, and PyTorch's retain_grad): a forward visits the
// named activations a hook wants, in data-flow order, after each is computed and before anything reads it; the
// hook may read it or change it in place (a patch, an ablation). The backward keeps the gradients of the named
// activations asked for. Names and shapes are the trace's (docs/trace.md), always with the batch axis.
// Backward through a patched forward: where a hook changed an element, that element is a constant (its
// gradient stops there, as for a PyTorch hook that overwrites it); elements it left as they were pass the
// gradient on unchanged. The norms' hook_mean, hook_rstd and hook_normalized are computed inside the norm:
// hooks may read them but not change them, and they have no gradient here (patch or differentiate hook_out).
template <typename T>
struct HookPoint {
  const std::string& name;
  T* data;             // contiguous, `shape`; the hook may change it in place
  const Shape& shape;  // [B, T, ...] (attention maps [B, H, T, T])
};

template <typename T>
struct Hooks {
  std::function<bool(const std::string& name)> wants;  // null: no activation is visited
  std::function<Status(HookPoint<T>& point)> fn;        // an error stops the forward with it
  std::vector<std::string> grad_names;                  // activations whose gradient backward() keeps
};

// The hook names a forward of `config` visits, in data-flow order (the trace's names): on x, or on tokens
// (a language model: hook_embed, hook_pos_embed and hook_logits as well). One name is a hook point only, not
// in the trace (H times the size of hook_attn_out): blocks.{i}.attn.hook_result [B, T, H, d], each head's
// share of out_proj (z_h W_O,h^T; hook_attn_out is their sum plus out_proj's bias).
std::vector<std::string> hook_names(const ModelConfig& config, bool on_tokens);
// hook_mean, hook_rstd and hook_normalized: computed inside a norm, so read-only to hooks and without a gradient.
bool hook_is_norm_internal(const std::string& name);

// What one norm saves (its input is saved by the block: the backward recomputes the normalised rows).
// `out` is used in pre placement; in post placement the norm writes straight into the residual stream
// (resid_mid / resid_post).
template <typename T>
struct NormActs {
  Tensor<T> mean;  // [N]     (LayerNorm only)
  Tensor<T> rstd;  // [N]
  Tensor<T> out;   // [N, d]  after gamma/beta (pre placement and final norm)
};

// Everything one block's forward saves; N = B*T rows.
template <typename T>
struct BlockActs {
  Tensor<T> resid_pre;     // [N, d]      block input
  NormActs<T> ln1, ln2;
  Tensor<T> qkv;           // [N, 3d]     q | k | v
  Tensor<T> scores;        // [B, H, T, T] q k^T / sqrt(d_head), -inf where masked
  Tensor<T> pattern;       // [B, H, T, T] softmax(scores)
  Tensor<T> z;             // [N, d]      heads' outputs side by side, before out_proj
  Tensor<T> attn_out;      // [N, d]      attention sub-layer output f (after dropout)
  Tensor<T> sum1;          // [N, d]      post: what enters norm1
  Tensor<T> resid_mid;     // [N, d]      input of the second sub-layer
  Tensor<T> mlp_pre;       // [N, d_ff]   x W1^T + b1
  Tensor<T> mlp_post;      // [N, d_ff]   act(mlp_pre)
  Tensor<T> mlp_out;       // [N, d]      FFN sub-layer output f (after dropout)
  Tensor<T> sum2;          // [N, d]      post: what enters norm2
  Tensor<T> resid_post;    // [N, d]      block output
  // Training with dropout only: masks (0 or 1/(1-p)) and the dropped hidden layer.
  Tensor<T> mask_pattern, mask_attn, mask_hidden, mask_mlp, mlp_hidden;
  // With hooks only: the FFN's own input when mlp.hook_in would otherwise alias the residual stream (post
  // placement, or no norm), so that patching it changes the FFN's input alone; the softmax before a hook
  // changed the pattern (the softmax's backward needs it); whether the attention ran in three stages.
  Tensor<T> mlp_in, pattern_softmax;
  bool staged_attention = false;
  // attn.hook_result, each head's share of out_proj [N, H, d] (hooks only); when a hook changed it, the
  // attention's output is the sum of its heads' shares plus the bias.
  Tensor<T> result;
  bool result_patched = false;
};

template <typename T>
class Model {
 public:
  // A model with zeroed parameters; fails with the config's error.
  static Result<Model> create(const ModelConfig& config);

  const ModelConfig& config() const { return config_; }
  const ParamLayout& layout() const { return layout_; }
  std::vector<T>& params() { return params_; }
  const std::vector<T>& params() const { return params_; }
  // Same layout as params(), allocated (zeroed) by the first backward, zero_grads() or grads(): a model that
  // only runs forward (a loaded GPT-2, say) holds no second buffer of its parameters' size. The const
  // accessor returns it as it is (empty before any of those).
  std::vector<T>& grads();
  const std::vector<T>& grads() const { return grads_; }
  void zero_grads();
  // Changes knobs that keep the parameter layout (alpha, residual, placement, activation, causal,
  // eps, dropout). REQUIRES: validate(config) ok and the same layout.
  Status set_config(const ModelConfig& config);

  // ---- The block stack on embeddings -----------------------------------------------------------
  // x: [batch, seq_len, d_model]. Keeps every activation for backward() and trace().
  Status forward(const T* x, int64_t batch, int64_t seq_len, const ForwardOptions& options = {});
  // The stack's output y [batch * seq_len, d_model] of the last forward.
  const Tensor<T>& output() const { return y_; }
  // How backward treats grads(): add to them (as PyTorch does), or overwrite them (no zero_grads()
  // needed first, and the large weight gradients are written without being read: faster).
  enum class Grads { accumulate, overwrite };

  // REQUIRES: forward() ran. dy: [batch, seq_len, d_model] = dLoss/dy. Puts the parameter gradients in
  // grads(); writes dLoss/dx into dx (nullable).
  void backward(const T* dy, T* dx, Grads mode = Grads::accumulate);

  // ---- The language model (config.vocab_size set) -----------------------------------------------
  // tokens, targets: [batch, seq_len] in [0, vocab). targets may be null (no loss).
  Status forward_lm(const int32_t* tokens, const int32_t* targets, int64_t batch, int64_t seq_len,
                    const ForwardOptions& options = {});
  const Tensor<T>& logits() const { return logits_; }  // [batch * seq_len, vocab]
  double loss() const { return loss_; }                // mean cross-entropy of the last forward_lm
  // REQUIRES: forward_lm() ran with targets. Puts the gradients of loss() in grads().
  void backward_lm(Grads mode = Grads::accumulate);

  // dLoss/d blocks.{layer}.hook_resid_pre from the last backward: [batch * seq_len, d_model].
  const Tensor<T>& resid_pre_grad(int64_t layer) const { return resid_pre_grads_[size_t(layer)]; }
  const BlockActs<T>& block_acts(int64_t layer) const { return acts_[size_t(layer)]; }

  // ---- Hooks (see Hooks above) ------------------------------------------------------------------
  // Fails on a gradient name this model has not (or one of a norm's internals); the hooks then stay off.
  // REQUIRES: no dropout in the forwards that use them.
  Status set_hooks(Hooks<T> hooks);
  void clear_hooks();
  // The gradient of a named activation asked for in grad_names, from the last backward (the trace's batched
  // shape); null when that backward did not reach it (e.g. hook_embed after a forward on x).
  const Tensor<T>* activation_grad(const std::string& name) const;

  // Every activation of the last forward under its hook name (docs/trace.md), in data-flow order.
  // batched: shapes [B, T, ...] as the input had, else [T, ...] (REQUIRES batch == 1).
  std::vector<NamedTensor<T>> trace(bool batched) const;

 private:
  explicit Model(const ModelConfig& config);
  void resize_workspace(int64_t batch, int64_t seq_len);
  Status block_forward(int64_t layer, const ForwardOptions& options);
  // forward() and backward() without starting a fresh set of patches / activation gradients (the language
  // model's own sites come before and after them).
  Status forward_stack(const T* x, int64_t batch, int64_t seq_len, const ForwardOptions& options);
  void backward_stack(const T* dy, T* dx, Grads mode);
  // The FFN's input: `in`, visited as mlp.hook_in (a copy of its own when `in` is the residual stream).
  Result<const T*> ffn_input(int64_t layer, T* in, bool is_stream);
  void block_backward(int64_t layer, T* dresid_post, T* dresid_pre);
  void norm_forward(const T* weight, const T* bias, NormActs<T>& acts, T* out, const T* inp);
  void norm_backward(const T* weight, T* dweight, T* dbias, const NormActs<T>& acts, const T* inp, const T* dout,
                     T* dinp);
  Status attention_sublayer_forward(int64_t layer, const T* inp, const ForwardOptions& options);
  void attention_sublayer_backward(int64_t layer, const T* inp, const T* dout, T* dinp);
  Status ffn_sublayer_forward(int64_t layer, const T* inp, const ForwardOptions& options);
  void ffn_sublayer_backward(int64_t layer, const T* inp, const T* dout, T* dinp);
  bool dropout_active(const ForwardOptions& o) const { return o.training && config_.dropout > 0; }
  // Hooks: visit an activation (contiguous, or `width` columns at `col` of rows `ld` apart); keep and mask a
  // gradient. No-ops without hooks.
  Status visit(const std::string& name, T* data, Shape shape);
  Status visit_columns(const std::string& name, T* base, int64_t ld, int64_t col, int64_t width, Shape shape);
  Status visit_norm(const std::string& prefix, const NormActs<T>& acts, const T* inp, T* out);
  void grad_site(const std::string& name, T* grad, Shape shape);
  void grad_site_columns(const std::string& name, T* base, int64_t ld, int64_t col, int64_t width, Shape shape);
  bool hook_wants(const std::string& name) const { return hooks_on_ && hooks_.wants && hooks_.wants(name); }
  bool grad_wanted(const std::string& name) const { return hooks_on_ && grad_wanted_.count(name); }
  Shape rows_shape(int64_t width) const { return {batch_, seq_len_, width}; }
  Shape heads_shape() const { return {batch_, seq_len_, config_.n_heads, config_.d_model / config_.n_heads}; }
  Shape maps_shape() const { return {batch_, config_.n_heads, seq_len_, seq_len_}; }
  // The head's weight: head.weight, or embed.weight with tied_head.
  int64_t head_weight_offset() const { return config_.tied_head ? layout_.embed_weight() : layout_.head_weight(); }
  const T* P(int64_t offset) const { return offset < 0 ? nullptr : params_.data() + offset; }
  T* G(int64_t offset) { return offset < 0 ? nullptr : grads_.data() + offset; }

  ModelConfig config_;
  ParamLayout layout_;
  std::vector<T> params_, grads_;
  // Overwrite mode: the linear weights' gradients are written by their GEMM (beta 0); every other
  // parameter's gradient (biases, norms, embeddings: small) is zeroed first and accumulated.
  std::vector<std::pair<int64_t, int64_t>> small_param_ranges_;  // (offset, numel)
  bool overwrite_weights_ = false;

  int64_t batch_ = 0, seq_len_ = 0;
  bool dropout_was_active_ = false;
  std::vector<BlockActs<T>> acts_;
  NormActs<T> ln_final_;
  Tensor<T> y_;  // [N, d]
  // Language model.
  std::vector<int32_t> tokens_, targets_;
  Tensor<T> embed_;        // [N, d] token embeddings
  Tensor<T> pos_embed_;    // [N, d] position embeddings (max_seq_len set)
  Tensor<T> stream_in_;    // [N, d] their sum, the first block's input
  Tensor<T> logits_, probs_;  // [N, V]
  double loss_ = 0;
  bool has_targets_ = false;
  bool lm_ran_ = false;  // the last forward was forward_lm()

  // Backward workspace, sized with the activations.
  std::vector<Tensor<T>> resid_pre_grads_;
  Tensor<T> d_stream_a_, d_stream_b_;  // [N, d] dLoss/d(residual stream), ping-pong between blocks
  Tensor<T> d_mid_, d_sub_in_, d_inc_, d_f_, d_z_;  // [N, d] inside a block
  Tensor<T> d_qkv_;                 // [N, 3d]
  Tensor<T> d_hidden_, d_pre_;      // [N, d_ff]
  Tensor<T> d_y_, d_x_, d_logits_;  // language model: [N, d], [N, d], [N, V]
  Tensor<T> attn_scratch_;  // [2, T, T]

  // Hooks.
  Hooks<T> hooks_;
  bool hooks_on_ = false;
  std::set<std::string> grad_wanted_;
  std::map<std::string, std::vector<uint8_t>> patched_;  // name -> 1 where the last forward's hook changed it
  std::map<std::string, Tensor<T>> act_grads_;
  Tensor<T> d_scores_, d_pattern_, d_mlp_in_, d_out_hooked_, d_result_, hook_scratch_;
};

}  // namespace blocklab
