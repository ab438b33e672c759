#include "engine/model.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "engine/blas.h"
#include "engine/kernels.h"

namespace blocklab {

namespace {

template <typename T>
void copy_n(T* dst, const T* src, int64_t n) {
  std::copy(src, src + n, dst);
}

// Dropout streams: one per (layer, site), so every mask of a step is distinct and reproducible.
enum DropoutSite : uint64_t { kSitePattern = 0, kSiteAttnOut = 1, kSiteHidden = 2, kSiteMlpOut = 3 };
uint64_t dropout_stream(int64_t layer, DropoutSite site) { return uint64_t(layer) * 4 + site; }

std::string block_name(int64_t layer, const char* suffix) { return "blocks." + std::to_string(layer) + "." + suffix; }

// (x - mean) * rstd per row (x * rstd for RMSNorm): a norm's hook_normalized, which the norm does not store.
template <typename T>
void normalized_rows(T* out, const T* inp, const T* mean, const T* rstd, int64_t N, int64_t d) {
  for (int64_t row = 0; row < N; ++row)
    for (int64_t c = 0; c < d; ++c) out[row * d + c] = (inp[row * d + c] - (mean ? mean[row] : T(0))) * rstd[row];
}

}  // namespace

std::vector<std::string> hook_names(const ModelConfig& config, bool on_tokens) {
  std::vector<std::string> out;
  const bool has_norm = config.norm != Norm::none, post = config.placement == Placement::post;
  auto norm = [&](const std::string& prefix) {
    if (config.norm == Norm::layernorm) out.push_back(prefix + "hook_mean");
    for (const char* n : {"hook_rstd", "hook_normalized", "hook_out"}) out.push_back(prefix + n);
  };
  if (on_tokens) out.push_back("hook_embed");
  if (on_tokens && config.max_seq_len) out.push_back("hook_pos_embed");
  for (int64_t i = 0; i < config.n_layers; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    out.push_back(p + "hook_resid_pre");
    if (!post && has_norm) norm(p + "ln1.");
    for (const char* n : {"attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_scores", "attn.hook_pattern",
                          "attn.hook_z", "attn.hook_result", "hook_attn_out"})
      out.push_back(p + n);
    if (post) {
      out.push_back(p + "hook_sum1");
      if (has_norm) norm(p + "ln1.");
    }
    out.push_back(p + "hook_resid_mid");
    if (!post && has_norm) norm(p + "ln2.");
    for (const char* n : {"mlp.hook_in", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out"}) out.push_back(p + n);
    if (post) {
      out.push_back(p + "hook_sum2");
      if (has_norm) norm(p + "ln2.");
    }
    out.push_back(p + "hook_resid_post");
  }
  if (config.final_norm) norm("ln_final.");
  if (on_tokens) out.push_back("hook_logits");
  return out;
}

bool hook_is_norm_internal(const std::string& name) {
  for (const char* tail : {"hook_mean", "hook_rstd", "hook_normalized"}) {
    const size_t n = std::strlen(tail);
    if (name.size() >= n && name.compare(name.size() - n, n, tail) == 0) return true;
  }
  return false;
}

template <typename T>
Model<T>::Model(const ModelConfig& config)
    : config_(config),
      layout_(config),
      params_(size_t(layout_.total()), T(0)) {
  for (const ParamSpec& s : layout_.specs()) {
    const bool linear_weight = s.shape.size() == 2 && s.name != "embed.weight" && s.name != "pos_embed.weight";
    if (!linear_weight) small_param_ranges_.push_back({s.offset, s.numel()});
  }
}

template <typename T>
Result<Model<T>> Model<T>::create(const ModelConfig& config) {
  Status st = validate(config);
  if (!st.is_ok()) return st;
  return Model(config);
}

template <typename T>
std::vector<T>& Model<T>::grads() {
  if (grads_.size() != params_.size()) grads_.assign(params_.size(), T(0));
  return grads_;
}

template <typename T>
void Model<T>::zero_grads() {
  std::fill(grads().begin(), grads().end(), T(0));
}

template <typename T>
Status Model<T>::set_config(const ModelConfig& config) {
  BLOCKLAB_RETURN_IF_ERROR(validate(config));
  ParamLayout layout(config);
  const auto& a = layout.specs();
  const auto& b = layout_.specs();
  bool same = a.size() == b.size();
  for (size_t i = 0; same && i < a.size(); ++i) same = a[i].name == b[i].name && a[i].shape == b[i].shape;
  if (!same)
    return Status::error("config: the new config needs other parameters (norm, sizes, final_norm or vocab_size "
                         "changed); expected the same parameter layout");
  config_ = config;
  batch_ = seq_len_ = 0;  // forget the activations' sizes: the new config may need other buffers
  return Status::ok();
}

// ---- Hooks ---------------------------------------------------------------------------------------

template <typename T>
Status Model<T>::set_hooks(Hooks<T> hooks) {
  clear_hooks();
  const std::vector<std::string> names = hook_names(config_, config_.is_language_model());
  const std::set<std::string> known(names.begin(), names.end());
  for (const std::string& g : hooks.grad_names) {
    if (!known.count(g))
      return Status::error("wrt: expected an activation name of this model (docs/trace.md), got \"" + g + "\"");
    if (hook_is_norm_internal(g))
      return Status::error("wrt: " + g + " is computed inside its norm and has no gradient here; expected an "
                           "activation such as its hook_out");
  }
  grad_wanted_ = std::set<std::string>(hooks.grad_names.begin(), hooks.grad_names.end());
  hooks_ = std::move(hooks);
  hooks_on_ = true;
  return Status::ok();
}

template <typename T>
void Model<T>::clear_hooks() {
  hooks_ = {};
  hooks_on_ = false;
  grad_wanted_.clear();
  patched_.clear();
  act_grads_.clear();
}

template <typename T>
const Tensor<T>* Model<T>::activation_grad(const std::string& name) const {
  auto it = act_grads_.find(name);
  return it == act_grads_.end() ? nullptr : &it->second;
}

template <typename T>
Status Model<T>::visit(const std::string& name, T* data, Shape shape) {
  if (!hook_wants(name)) return Status::ok();
  const int64_t n = numel_of(shape);
  hook_scratch_.data.assign(data, data + n);
  HookPoint<T> point{name, data, shape};
  Status st = hooks_.fn(point);
  if (!st.is_ok()) return st;
  std::vector<uint8_t> changed(size_t(n), 0);
  bool any = false;
  for (int64_t i = 0; i < n; ++i) {  // bitwise: a NaN left as it was is unchanged
    changed[size_t(i)] = std::memcmp(data + i, hook_scratch_.ptr() + i, sizeof(T)) != 0;
    any = any || changed[size_t(i)];
  }
  if (!any) return Status::ok();
  if (hook_is_norm_internal(name)) {
    const std::string prefix = name.substr(0, name.rfind('.') + 1);
    return Status::error("hook " + name + ": computed inside its norm, a hook may read it but not change it; "
                         "expected it unchanged (patch " + prefix + "hook_out instead)");
  }
  patched_[name] = std::move(changed);
  return Status::ok();
}

template <typename T>
Status Model<T>::visit_columns(const std::string& name, T* base, int64_t ld, int64_t col, int64_t width, Shape shape) {
  if (!hook_wants(name)) return Status::ok();
  const int64_t rows = numel_of(shape) / width;
  Tensor<T> view({rows, width});
  for (int64_t r = 0; r < rows; ++r) copy_n(view.ptr() + r * width, base + r * ld + col, width);
  Status st = visit(name, view.ptr(), std::move(shape));
  for (int64_t r = 0; r < rows; ++r) copy_n(base + r * ld + col, view.ptr() + r * width, width);
  return st;
}

template <typename T>
Status Model<T>::visit_norm(const std::string& prefix, const NormActs<T>& acts, const T* inp, T* out) {
  if (!hooks_on_) return Status::ok();
  const int64_t N = batch_ * seq_len_, d = config_.d_model;
  const bool layernorm = config_.norm == Norm::layernorm;
  // The statistics are read-only to hooks: each is handed over as a copy (when wanted), checked unchanged by visit().
  for (const auto& [name, stored] : {std::pair{prefix + "hook_mean", &acts.mean}, std::pair{prefix + "hook_rstd", &acts.rstd}}) {
    if ((!layernorm && stored == &acts.mean) || !hook_wants(name)) continue;
    Tensor<T> stat = *stored;
    BLOCKLAB_RETURN_IF_ERROR(visit(name, stat.ptr(), {batch_, seq_len_}));
  }
  if (hook_wants(prefix + "hook_normalized")) {
    Tensor<T> normalized({N, d});
    normalized_rows(normalized.ptr(), inp, layernorm ? acts.mean.ptr() : static_cast<const T*>(nullptr), acts.rstd.ptr(), N, d);
    BLOCKLAB_RETURN_IF_ERROR(visit(prefix + "hook_normalized", normalized.ptr(), rows_shape(d)));
  }
  return visit(prefix + "hook_out", out, rows_shape(d));
}

template <typename T>
void Model<T>::grad_site(const std::string& name, T* grad, Shape shape) {
  if (!hooks_on_) return;
  const int64_t n = numel_of(shape);
  if (grad_wanted_.count(name)) act_grads_[name] = Tensor<T>(shape, std::vector<T>(grad, grad + n));
  auto it = patched_.find(name);
  if (it == patched_.end()) return;
  for (int64_t i = 0; i < n; ++i)
    if (it->second[size_t(i)]) grad[i] = T(0);
}

template <typename T>
void Model<T>::grad_site_columns(const std::string& name, T* base, int64_t ld, int64_t col, int64_t width, Shape shape) {
  if (!hooks_on_ || (!grad_wanted_.count(name) && !patched_.count(name))) return;
  const int64_t rows = numel_of(shape) / width;
  Tensor<T> view({rows, width});
  for (int64_t r = 0; r < rows; ++r) copy_n(view.ptr() + r * width, base + r * ld + col, width);
  grad_site(name, view.ptr(), std::move(shape));
  for (int64_t r = 0; r < rows; ++r) copy_n(base + r * ld + col, view.ptr() + r * width, width);
}

// ---- Workspace ---------------------------------------------------------------------------------

template <typename T>
void Model<T>::resize_workspace(int64_t batch, int64_t seq_len) {
  if (batch == batch_ && seq_len == seq_len_) return;
  batch_ = batch;
  seq_len_ = seq_len;
  const int64_t N = batch * seq_len, d = config_.d_model, f = config_.d_ff, H = config_.n_heads;
  const bool post = config_.placement == Placement::post;
  const bool has_norm = config_.norm != Norm::none;
  auto resize_norm = [&](NormActs<T>& n, bool with_out) {
    n.mean.resize({config_.norm == Norm::layernorm ? N : 0});
    n.rstd.resize({N});
    n.out.resize({with_out ? N : 0, d});
  };
  acts_.resize(size_t(config_.n_layers));
  for (BlockActs<T>& a : acts_) {
    a.resid_pre.resize({N, d});
    resize_norm(a.ln1, has_norm && !post);
    resize_norm(a.ln2, has_norm && !post);
    a.qkv.resize({N, 3 * d});
    a.scores.resize({batch, H, seq_len, seq_len});
    a.pattern.resize({batch, H, seq_len, seq_len});
    a.z.resize({N, d});
    a.attn_out.resize({N, d});
    a.sum1.resize({post ? N : 0, d});
    a.resid_mid.resize({N, d});
    a.mlp_pre.resize({N, f});
    a.mlp_post.resize({N, f});
    a.mlp_out.resize({N, d});
    a.sum2.resize({post ? N : 0, d});
    a.resid_post.resize({N, d});
  }
  resize_norm(ln_final_, config_.final_norm);
  y_.resize({N, d});
  resid_pre_grads_.resize(size_t(config_.n_layers));
  for (Tensor<T>& g : resid_pre_grads_) g.resize({N, d});
  for (Tensor<T>* t : {&d_stream_a_, &d_stream_b_, &d_mid_, &d_sub_in_, &d_f_, &d_inc_, &d_z_, &d_y_, &d_x_}) t->resize({N, d});
  d_qkv_.resize({N, 3 * d});
  d_hidden_.resize({N, f});
  d_pre_.resize({N, f});
  attn_scratch_.resize({2, seq_len, seq_len});
}

// ---- Norms: the configured one, or nothing ------------------------------------------------------

template <typename T>
void Model<T>::norm_forward(const T* weight, const T* bias, NormActs<T>& acts, T* out, const T* inp) {
  const int64_t N = batch_ * seq_len_, d = config_.d_model;
  if (config_.norm == Norm::layernorm)
    layernorm_forward(out, acts.mean.ptr(), acts.rstd.ptr(), inp, weight, bias, N, d, config_.eps);
  else if (config_.norm == Norm::rmsnorm)
    rmsnorm_forward(out, acts.rstd.ptr(), inp, weight, N, d, config_.eps);
  else
    copy_n(out, inp, N * d);
}

template <typename T>
void Model<T>::norm_backward(const T* weight, T* dweight, T* dbias, const NormActs<T>& acts, const T* inp,
                             const T* dout, T* dinp) {
  const int64_t N = batch_ * seq_len_, d = config_.d_model;
  if (config_.norm == Norm::layernorm)
    layernorm_backward(dinp, dweight, dbias, dout, inp, weight, acts.mean.ptr(), acts.rstd.ptr(), N, d);
  else if (config_.norm == Norm::rmsnorm)
    rmsnorm_backward(dinp, dweight, dout, inp, weight, acts.rstd.ptr(), N, d);
  else
    for (int64_t i = 0; i < N * d; ++i) dinp[i] += dout[i];
}

// ---- Sub-layers --------------------------------------------------------------------------------

template <typename T>
Status Model<T>::attention_sublayer_forward(int64_t layer, const T* inp, const ForwardOptions& options) {
  BlockActs<T>& a = acts_[size_t(layer)];
  const BlockOffsets& o = layout_.block(layer);
  const int64_t N = batch_ * seq_len_, d = config_.d_model, H = config_.n_heads;
  const bool drop = dropout_active(options);
  if (drop) {
    a.mask_pattern.resize(a.pattern.shape);
    dropout_mask(a.mask_pattern.ptr(), a.mask_pattern.numel(), config_.dropout, options.dropout_seed,
                 dropout_stream(layer, kSitePattern));
  }
  linear_forward(a.qkv.ptr(), inp, P(o.in_proj_weight), P(o.in_proj_bias), N, d, 3 * d);
  a.staged_attention = false;
  if (hooks_on_) {
    const char* parts[3] = {"attn.hook_q", "attn.hook_k", "attn.hook_v"};
    for (int part = 0; part < 3; ++part)
      BLOCKLAB_RETURN_IF_ERROR(visit_columns(block_name(layer, parts[part]), a.qkv.ptr(), 3 * d, part * d, d, heads_shape()));
    const std::string scores = block_name(layer, "attn.hook_scores"), pattern = block_name(layer, "attn.hook_pattern");
    a.staged_attention = hook_wants(scores) || hook_wants(pattern) || grad_wanted(scores) || grad_wanted(pattern);
    if (a.staged_attention) {  // scores, then the pattern, then z, each visited between
      attention_scores_forward(a.scores.ptr(), a.qkv.ptr(), batch_, seq_len_, d, H, config_.causal);
      BLOCKLAB_RETURN_IF_ERROR(visit(scores, a.scores.ptr(), maps_shape()));
      softmax_forward(a.pattern.ptr(), a.scores.ptr(), batch_ * H * seq_len_, seq_len_);
      a.pattern_softmax = a.pattern;
      BLOCKLAB_RETURN_IF_ERROR(visit(pattern, a.pattern.ptr(), maps_shape()));
      attention_mix_forward(a.z.ptr(), a.pattern.ptr(), a.qkv.ptr(), batch_, seq_len_, d, H);
    }
  }
  if (!a.staged_attention)
    attention_forward(a.z.ptr(), a.scores.ptr(), a.pattern.ptr(), a.qkv.ptr(), drop ? a.mask_pattern.ptr() : nullptr,
                      attn_scratch_.ptr(), batch_, seq_len_, d, H, config_.causal);
  a.result_patched = false;
  if (hooks_on_) {
    BLOCKLAB_RETURN_IF_ERROR(visit(block_name(layer, "attn.hook_z"), a.z.ptr(), heads_shape()));
    const std::string name = block_name(layer, "attn.hook_result");
    if (hook_wants(name)) {  // result[n, h, :] = z[n, h, :] W_O[:, h]^T, one product per head
      const int64_t D = d / H;
      a.result.resize({N, H, d});
      for (int64_t h = 0; h < H; ++h)
        gemm<T>(false, true, N, d, D, T(1), a.z.ptr() + h * D, d, P(o.out_proj_weight) + h * D, d, T(0),
                a.result.ptr() + h * d, H * d);
      BLOCKLAB_RETURN_IF_ERROR(visit(name, a.result.ptr(), {batch_, seq_len_, H, d}));
      a.result_patched = patched_.count(name) > 0;
    }
  }
  if (a.result_patched) {  // the heads' shares as the hook left them, summed, plus the bias
    const T* bias = P(o.out_proj_bias);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < d; ++c) {
        T sum = bias[c];
        for (int64_t h = 0; h < H; ++h) sum += a.result.data[size_t((n * H + h) * d + c)];
        a.attn_out.data[size_t(n * d + c)] = sum;
      }
  } else {
    linear_forward(a.attn_out.ptr(), a.z.ptr(), P(o.out_proj_weight), P(o.out_proj_bias), N, d, d);
  }
  if (drop) {
    a.mask_attn.resize({N, d});
    dropout_mask(a.mask_attn.ptr(), N * d, config_.dropout, options.dropout_seed, dropout_stream(layer, kSiteAttnOut));
    dropout_forward(a.attn_out.ptr(), a.attn_out.ptr(), a.mask_attn.ptr(), N * d);
  }
  if (hooks_on_) return visit(block_name(layer, "hook_attn_out"), a.attn_out.ptr(), rows_shape(d));
  return Status::ok();
}

template <typename T>
void Model<T>::attention_sublayer_backward(int64_t layer, const T* inp, const T* dout, T* dinp) {
  const BlockActs<T>& a = acts_[size_t(layer)];
  const BlockOffsets& o = layout_.block(layer);
  const int64_t N = batch_ * seq_len_, d = config_.d_model, H = config_.n_heads;
  const T* d_proj = dout;  // gradient of out_proj's output
  if (dropout_was_active_) {
    d_f_.fill(0);
    dropout_backward(d_f_.ptr(), dout, a.mask_attn.ptr(), N * d);
    d_proj = d_f_.ptr();
  }
  d_z_.fill(0);
  const std::string result_name = hooks_on_ ? block_name(layer, "attn.hook_result") : std::string();
  if (a.result_patched || grad_wanted(result_name)) {  // every head's share sees the output's gradient
    d_result_.resize({batch_, seq_len_, H, d});
    for (int64_t n = 0; n < N; ++n)
      for (int64_t h = 0; h < H; ++h) copy_n(d_result_.ptr() + (n * H + h) * d, d_proj + n * d, d);
    grad_site(result_name, d_result_.ptr(), d_result_.shape);
  }
  if (a.result_patched) {  // through each head's share: dz_h = d_result_h W_O,h ; dW_O,h += d_result_h^T z_h
    const int64_t D = d / H;
    T* dw = G(o.out_proj_weight);
    if (overwrite_weights_) std::fill(dw, dw + d * d, T(0));
    for (int64_t h = 0; h < H; ++h) {
      gemm<T>(false, false, N, D, d, T(1), d_result_.ptr() + h * d, H * d, P(o.out_proj_weight) + h * D, d, T(1),
              d_z_.ptr() + h * D, d);
      gemm<T>(true, false, d, D, N, T(1), d_result_.ptr() + h * d, H * d, a.z.ptr() + h * D, d, T(1), dw + h * D, d);
    }
    T* db = G(o.out_proj_bias);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < d; ++c) db[c] += d_proj[n * d + c];
  } else {
    linear_backward(d_z_.ptr(), G(o.out_proj_weight), G(o.out_proj_bias), d_proj, a.z.ptr(), P(o.out_proj_weight), N,
                    d, d, !overwrite_weights_);
  }
  if (hooks_on_) grad_site(block_name(layer, "attn.hook_z"), d_z_.ptr(), heads_shape());
  d_qkv_.fill(0);
  if (a.staged_attention) {  // z = pattern v, pattern = softmax(scores), scores = q k^T / sqrt(D), each visited
    const int64_t rows = batch_ * H * seq_len_;
    d_pattern_.resize(maps_shape());
    d_pattern_.fill(0);
    attention_mix_backward(d_pattern_.ptr(), d_qkv_.ptr(), d_z_.ptr(), a.pattern.ptr(), a.qkv.ptr(), batch_, seq_len_, d, H);
    grad_site(block_name(layer, "attn.hook_pattern"), d_pattern_.ptr(), maps_shape());
    d_scores_.resize(maps_shape());
    d_scores_.fill(0);
    softmax_backward(d_scores_.ptr(), a.pattern_softmax.ptr(), d_pattern_.ptr(), rows, seq_len_);
    grad_site(block_name(layer, "attn.hook_scores"), d_scores_.ptr(), maps_shape());
    attention_scores_backward(d_qkv_.ptr(), d_scores_.ptr(), a.qkv.ptr(), batch_, seq_len_, d, H);
  } else {
    attention_backward(d_qkv_.ptr(), d_z_.ptr(), a.qkv.ptr(), a.pattern.ptr(),
                       dropout_was_active_ ? a.mask_pattern.ptr() : nullptr, attn_scratch_.ptr(), batch_, seq_len_, d,
                       H);
  }
  if (hooks_on_) {
    const char* parts[3] = {"attn.hook_q", "attn.hook_k", "attn.hook_v"};
    for (int part = 2; part >= 0; --part)
      grad_site_columns(block_name(layer, parts[part]), d_qkv_.ptr(), 3 * d, part * d, d, heads_shape());
  }
  linear_backward(dinp, G(o.in_proj_weight), G(o.in_proj_bias), d_qkv_.ptr(), inp, P(o.in_proj_weight), N, d,
                  3 * d, !overwrite_weights_);
}

// [web:ffn-forward begin] (the web app shows this code beside the FFN widget, extracted at build time)
template <typename T>
Status Model<T>::ffn_sublayer_forward(int64_t layer, const T* inp, const ForwardOptions& options) {
  BlockActs<T>& a = acts_[size_t(layer)];
  const BlockOffsets& o = layout_.block(layer);
  const int64_t N = batch_ * seq_len_, d = config_.d_model, f = config_.d_ff;
  const bool drop = dropout_active(options);
  linear_forward(a.mlp_pre.ptr(), inp, P(o.linear1_weight), P(o.linear1_bias), N, d, f);
  if (hooks_on_) BLOCKLAB_RETURN_IF_ERROR(visit(block_name(layer, "mlp.hook_pre"), a.mlp_pre.ptr(), rows_shape(f)));
  activation_forward(config_.activation, a.mlp_post.ptr(), a.mlp_pre.ptr(), N * f);
  if (hooks_on_) BLOCKLAB_RETURN_IF_ERROR(visit(block_name(layer, "mlp.hook_post"), a.mlp_post.ptr(), rows_shape(f)));
  const T* hidden = a.mlp_post.ptr();
  if (drop) {
    a.mask_hidden.resize({N, f});
    a.mlp_hidden.resize({N, f});
    dropout_mask(a.mask_hidden.ptr(), N * f, config_.dropout, options.dropout_seed, dropout_stream(layer, kSiteHidden));
    dropout_forward(a.mlp_hidden.ptr(), a.mlp_post.ptr(), a.mask_hidden.ptr(), N * f);
    hidden = a.mlp_hidden.ptr();
  }
  linear_forward(a.mlp_out.ptr(), hidden, P(o.linear2_weight), P(o.linear2_bias), N, f, d);
  if (drop) {
    a.mask_mlp.resize({N, d});
    dropout_mask(a.mask_mlp.ptr(), N * d, config_.dropout, options.dropout_seed, dropout_stream(layer, kSiteMlpOut));
    dropout_forward(a.mlp_out.ptr(), a.mlp_out.ptr(), a.mask_mlp.ptr(), N * d);
  }
  if (hooks_on_) return visit(block_name(layer, "hook_mlp_out"), a.mlp_out.ptr(), rows_shape(d));
  return Status::ok();
}
// [web:ffn-forward end]

template <typename T>
void Model<T>::ffn_sublayer_backward(int64_t layer, const T* inp, const T* dout, T* dinp) {
  const BlockActs<T>& a = acts_[size_t(layer)];
  const BlockOffsets& o = layout_.block(layer);
  const int64_t N = batch_ * seq_len_, d = config_.d_model, f = config_.d_ff;
  const T* d_lin2 = dout;  // gradient of linear2's output
  const T* hidden = a.mlp_post.ptr();
  if (dropout_was_active_) {
    d_f_.fill(0);
    dropout_backward(d_f_.ptr(), dout, a.mask_mlp.ptr(), N * d);
    d_lin2 = d_f_.ptr();
    hidden = a.mlp_hidden.ptr();
  }
  d_hidden_.fill(0);
  linear_backward(d_hidden_.ptr(), G(o.linear2_weight), G(o.linear2_bias), d_lin2, hidden, P(o.linear2_weight), N,
                  f, d, !overwrite_weights_);
  if (dropout_was_active_) {  // through the hidden layer's mask, in place
    for (int64_t i = 0; i < N * f; ++i) d_hidden_.data[size_t(i)] *= a.mask_hidden.data[size_t(i)];
  }
  if (hooks_on_) grad_site(block_name(layer, "mlp.hook_post"), d_hidden_.ptr(), rows_shape(f));
  d_pre_.fill(0);
  activation_backward(config_.activation, d_pre_.ptr(), a.mlp_pre.ptr(), d_hidden_.ptr(), N * f);
  if (hooks_on_) grad_site(block_name(layer, "mlp.hook_pre"), d_pre_.ptr(), rows_shape(f));
  linear_backward(dinp, G(o.linear1_weight), G(o.linear1_bias), d_pre_.ptr(), inp, P(o.linear1_weight), N, d, f,
                  !overwrite_weights_);
}

// ---- One block ---------------------------------------------------------------------------------

template <typename T>
Result<const T*> Model<T>::ffn_input(int64_t layer, T* in, bool is_stream) {
  BlockActs<T>& a = acts_[size_t(layer)];
  a.mlp_in.resize({0, config_.d_model});
  if (!hooks_on_) return static_cast<const T*>(in);
  const std::string name = block_name(layer, "mlp.hook_in");
  if (is_stream && hook_wants(name)) {  // a patch changes the FFN's input, not the stream
    a.mlp_in.resize(rows_shape(config_.d_model));
    copy_n(a.mlp_in.ptr(), in, a.mlp_in.numel());
    in = a.mlp_in.ptr();
  }
  BLOCKLAB_RETURN_IF_ERROR(visit(name, in, rows_shape(config_.d_model)));
  return static_cast<const T*>(in);
}

template <typename T>
Status Model<T>::block_forward(int64_t layer, const ForwardOptions& options) {
  BlockActs<T>& a = acts_[size_t(layer)];
  const BlockOffsets& o = layout_.block(layer);
  const int64_t d = config_.d_model, n = batch_ * seq_len_ * d;
  const T alpha = o.alpha >= 0 ? *P(o.alpha) : T(config_.residual_alpha);
  const bool res = config_.residual;
  const bool has_norm = config_.norm != Norm::none;
  const std::string p = hooks_on_ ? block_name(layer, "") : std::string();
  if (hooks_on_) BLOCKLAB_RETURN_IF_ERROR(visit(p + "hook_resid_pre", a.resid_pre.ptr(), rows_shape(d)));
  if (config_.placement == Placement::pre) {
    // mid = r(x, Attn(N1(x)))
    const T* attn_in = a.resid_pre.ptr();
    if (has_norm) {
      norm_forward(P(o.norm1_weight), P(o.norm1_bias), a.ln1, a.ln1.out.ptr(), a.resid_pre.ptr());
      BLOCKLAB_RETURN_IF_ERROR(visit_norm(p + "ln1.", a.ln1, a.resid_pre.ptr(), a.ln1.out.ptr()));
      attn_in = a.ln1.out.ptr();
    }
    BLOCKLAB_RETURN_IF_ERROR(attention_sublayer_forward(layer, attn_in, options));
    residual_forward(a.resid_mid.ptr(), a.resid_pre.ptr(), a.attn_out.ptr(), alpha, res, n);
    if (hooks_on_) BLOCKLAB_RETURN_IF_ERROR(visit(p + "hook_resid_mid", a.resid_mid.ptr(), rows_shape(d)));
    // out = r(mid, FFN(N2(mid)))
    T* ffn_in = a.resid_mid.ptr();
    if (has_norm) {
      norm_forward(P(o.norm2_weight), P(o.norm2_bias), a.ln2, a.ln2.out.ptr(), a.resid_mid.ptr());
      BLOCKLAB_RETURN_IF_ERROR(visit_norm(p + "ln2.", a.ln2, a.resid_mid.ptr(), a.ln2.out.ptr()));
      ffn_in = a.ln2.out.ptr();
    }
    Result<const T*> in = ffn_input(layer, ffn_in, !has_norm);
    if (!in) return in.status();
    BLOCKLAB_RETURN_IF_ERROR(ffn_sublayer_forward(layer, in.value(), options));
    residual_forward(a.resid_post.ptr(), a.resid_mid.ptr(), a.mlp_out.ptr(), alpha, res, n);
  } else {
    // mid = N1(r(x, Attn(x)))
    BLOCKLAB_RETURN_IF_ERROR(attention_sublayer_forward(layer, a.resid_pre.ptr(), options));
    residual_forward(a.sum1.ptr(), a.resid_pre.ptr(), a.attn_out.ptr(), alpha, res, n);
    if (hooks_on_) BLOCKLAB_RETURN_IF_ERROR(visit(p + "hook_sum1", a.sum1.ptr(), rows_shape(d)));
    norm_forward(P(o.norm1_weight), P(o.norm1_bias), a.ln1, a.resid_mid.ptr(), a.sum1.ptr());
    if (has_norm) BLOCKLAB_RETURN_IF_ERROR(visit_norm(p + "ln1.", a.ln1, a.sum1.ptr(), a.resid_mid.ptr()));
    if (hooks_on_) BLOCKLAB_RETURN_IF_ERROR(visit(p + "hook_resid_mid", a.resid_mid.ptr(), rows_shape(d)));
    // out = N2(r(mid, FFN(mid)))
    Result<const T*> in = ffn_input(layer, a.resid_mid.ptr(), true);
    if (!in) return in.status();
    BLOCKLAB_RETURN_IF_ERROR(ffn_sublayer_forward(layer, in.value(), options));
    residual_forward(a.sum2.ptr(), a.resid_mid.ptr(), a.mlp_out.ptr(), alpha, res, n);
    if (hooks_on_) BLOCKLAB_RETURN_IF_ERROR(visit(p + "hook_sum2", a.sum2.ptr(), rows_shape(d)));
    norm_forward(P(o.norm2_weight), P(o.norm2_bias), a.ln2, a.resid_post.ptr(), a.sum2.ptr());
    if (has_norm) BLOCKLAB_RETURN_IF_ERROR(visit_norm(p + "ln2.", a.ln2, a.sum2.ptr(), a.resid_post.ptr()));
  }
  if (hooks_on_) return visit(p + "hook_resid_post", a.resid_post.ptr(), rows_shape(d));
  return Status::ok();
}

template <typename T>
void Model<T>::block_backward(int64_t layer, T* dresid_post, T* dresid_pre) {
  const BlockActs<T>& a = acts_[size_t(layer)];
  const BlockOffsets& o = layout_.block(layer);
  const int64_t d = config_.d_model, n = batch_ * seq_len_ * d;
  const T alpha = o.alpha >= 0 ? *P(o.alpha) : T(config_.residual_alpha);
  T* dalpha = G(o.alpha);  // null unless alpha is learnable
  const bool res = config_.residual;
  const bool has_norm = config_.norm != Norm::none;
  T* d_mid = d_mid_.ptr();
  T* d_sub = d_sub_in_.ptr();
  // With hooks, each named activation's gradient is kept (and masked where a hook changed it) once it is whole.
  const std::string p = hooks_on_ ? block_name(layer, "") : std::string();
  auto site = [&](const char* name, T* grad) {
    if (hooks_on_) grad_site(p + name, grad, rows_shape(d));
  };
  // The FFN's input, and the gradient for it: into `into`, or (with hooks) through mlp.hook_in's own site.
  const T* ffn_in = a.mlp_in.numel() ? a.mlp_in.ptr() : (has_norm && config_.placement == Placement::pre) ? a.ln2.out.ptr() : a.resid_mid.ptr();
  auto ffn_backward_into = [&](T* into) {
    if (!hooks_on_) return ffn_sublayer_backward(layer, ffn_in, d_inc_.ptr(), into);
    d_mlp_in_.resize(rows_shape(d));
    d_mlp_in_.fill(0);
    ffn_sublayer_backward(layer, ffn_in, d_inc_.ptr(), d_mlp_in_.ptr());
    site("mlp.hook_in", d_mlp_in_.ptr());
    for (int64_t i = 0; i < n; ++i) into[i] += d_mlp_in_.data[size_t(i)];
  };
  site("hook_resid_post", dresid_post);
  // d_inc_ holds the gradient of a sub-layer's increment f (d_f_ is the sub-layers' own scratch).
  if (config_.placement == Placement::pre) {
    std::fill(d_mid, d_mid + n, T(0));
    d_inc_.fill(0);
    residual_backward(d_mid, d_inc_.ptr(), dalpha, dresid_post, a.mlp_out.ptr(), alpha, res, n);
    site("hook_mlp_out", d_inc_.ptr());
    if (has_norm) {
      std::fill(d_sub, d_sub + n, T(0));
      ffn_backward_into(d_sub);
      site("ln2.hook_out", d_sub);
      norm_backward(P(o.norm2_weight), G(o.norm2_weight), G(o.norm2_bias), a.ln2, a.resid_mid.ptr(), d_sub, d_mid);
    } else {
      ffn_backward_into(d_mid);
    }
    site("hook_resid_mid", d_mid);
    d_inc_.fill(0);
    residual_backward(dresid_pre, d_inc_.ptr(), dalpha, d_mid, a.attn_out.ptr(), alpha, res, n);
    site("hook_attn_out", d_inc_.ptr());
    if (has_norm) {
      std::fill(d_sub, d_sub + n, T(0));
      attention_sublayer_backward(layer, a.ln1.out.ptr(), d_inc_.ptr(), d_sub);
      site("ln1.hook_out", d_sub);
      norm_backward(P(o.norm1_weight), G(o.norm1_weight), G(o.norm1_bias), a.ln1, a.resid_pre.ptr(), d_sub, dresid_pre);
    } else {
      attention_sublayer_backward(layer, a.resid_pre.ptr(), d_inc_.ptr(), dresid_pre);
    }
  } else {
    T* d_sum = d_sub;
    if (has_norm) site("ln2.hook_out", dresid_post);
    std::fill(d_sum, d_sum + n, T(0));
    norm_backward(P(o.norm2_weight), G(o.norm2_weight), G(o.norm2_bias), a.ln2, a.sum2.ptr(), dresid_post, d_sum);
    site("hook_sum2", d_sum);
    std::fill(d_mid, d_mid + n, T(0));
    d_inc_.fill(0);
    residual_backward(d_mid, d_inc_.ptr(), dalpha, d_sum, a.mlp_out.ptr(), alpha, res, n);
    site("hook_mlp_out", d_inc_.ptr());
    ffn_backward_into(d_mid);
    site("hook_resid_mid", d_mid);
    if (has_norm) site("ln1.hook_out", d_mid);
    std::fill(d_sum, d_sum + n, T(0));
    norm_backward(P(o.norm1_weight), G(o.norm1_weight), G(o.norm1_bias), a.ln1, a.sum1.ptr(), d_mid, d_sum);
    site("hook_sum1", d_sum);
    d_inc_.fill(0);
    residual_backward(dresid_pre, d_inc_.ptr(), dalpha, d_sum, a.attn_out.ptr(), alpha, res, n);
    site("hook_attn_out", d_inc_.ptr());
    attention_sublayer_backward(layer, a.resid_pre.ptr(), d_inc_.ptr(), dresid_pre);
  }
}

// ---- The stack -----------------------------------------------------------------------------------

template <typename T>
Status Model<T>::forward(const T* x, int64_t batch, int64_t seq_len, const ForwardOptions& options) {
  patched_.clear();
  return forward_stack(x, batch, seq_len, options);
}

template <typename T>
Status Model<T>::forward_stack(const T* x, int64_t batch, int64_t seq_len, const ForwardOptions& options) {
  if (batch < 1) return Status::error("input: expected batch >= 1, got " + std::to_string(batch));
  if (seq_len < 1) return Status::error("input: expected sequence length >= 1, got " + std::to_string(seq_len));
  if (hooks_on_ && dropout_active(options))
    return Status::error("hooks: expected a forward without dropout, got training with dropout " +
                         std::to_string(config_.dropout));
  resize_workspace(batch, seq_len);
  lm_ran_ = false;
  dropout_was_active_ = dropout_active(options);
  const int64_t n = batch * seq_len * config_.d_model;
  copy_n(acts_[0].resid_pre.ptr(), x, n);
  for (int64_t i = 0; i < config_.n_layers; ++i) {
    BLOCKLAB_RETURN_IF_ERROR(block_forward(i, options));
    if (i + 1 < config_.n_layers) copy_n(acts_[size_t(i + 1)].resid_pre.ptr(), acts_[size_t(i)].resid_post.ptr(), n);
  }
  const T* last = acts_.back().resid_post.ptr();
  if (config_.final_norm) {
    norm_forward(P(layout_.final_norm_weight()), P(layout_.final_norm_bias()), ln_final_, ln_final_.out.ptr(), last);
    BLOCKLAB_RETURN_IF_ERROR(visit_norm("ln_final.", ln_final_, last, ln_final_.out.ptr()));
    last = ln_final_.out.ptr();
  }
  copy_n(y_.ptr(), last, n);
  has_targets_ = false;
  return Status::ok();
}

template <typename T>
void Model<T>::backward(const T* dy, T* dx, Grads mode) {
  act_grads_.clear();
  backward_stack(dy, dx, mode);
}

template <typename T>
void Model<T>::backward_stack(const T* dy, T* dx, Grads mode) {
  const int64_t n = batch_ * seq_len_ * config_.d_model;
  grads();  // allocated by the first backward
  overwrite_weights_ = mode == Grads::overwrite;
  if (overwrite_weights_)
    for (auto [offset, count] : small_param_ranges_) std::fill(grads_.begin() + offset, grads_.begin() + offset + count, T(0));
  Tensor<T>* d_cur = &d_stream_a_;   // dLoss / d(current residual stream)
  Tensor<T>* d_next = &d_stream_b_;
  if (config_.final_norm) {
    if (hooks_on_) {  // the final norm's output is y: its site sees dy
      d_out_hooked_.resize(rows_shape(config_.d_model));
      copy_n(d_out_hooked_.ptr(), dy, n);
      grad_site("ln_final.hook_out", d_out_hooked_.ptr(), rows_shape(config_.d_model));
      dy = d_out_hooked_.ptr();
    }
    d_cur->fill(0);
    norm_backward(P(layout_.final_norm_weight()), G(layout_.final_norm_weight()), G(layout_.final_norm_bias()),
                  ln_final_, acts_.back().resid_post.ptr(), dy, d_cur->ptr());
  } else {
    copy_n(d_cur->ptr(), dy, n);
  }
  for (int64_t i = config_.n_layers - 1; i >= 0; --i) {
    d_next->fill(0);
    block_backward(i, d_cur->ptr(), d_next->ptr());
    if (hooks_on_) grad_site(block_name(i, "hook_resid_pre"), d_next->ptr(), rows_shape(config_.d_model));
    copy_n(resid_pre_grads_[size_t(i)].ptr(), d_next->ptr(), n);
    std::swap(d_cur, d_next);
  }
  if (dx) copy_n(dx, d_cur->ptr(), n);
}

// ---- The language model ------------------------------------------------------------------------

template <typename T>
Status Model<T>::forward_lm(const int32_t* tokens, const int32_t* targets, int64_t batch, int64_t seq_len,
                            const ForwardOptions& options) {
  if (!config_.vocab_size) return Status::error("model: expected a language model (vocab_size set), got vocab_size null");
  const int64_t V = *config_.vocab_size, N = batch * seq_len, d = config_.d_model;
  if (batch < 1 || seq_len < 1)
    return Status::error("tokens: expected shape [B >= 1, T >= 1], got [" + std::to_string(batch) + ", " +
                         std::to_string(seq_len) + "]");
  for (const auto& [what, ids] : {std::pair{"tokens", tokens}, std::pair{"targets", targets}}) {
    if (!ids) continue;
    for (int64_t i = 0; i < N; ++i)
      if (ids[i] < 0 || ids[i] >= V)
        return Status::error(std::string(what) + "[" + std::to_string(i) + "]: expected an id in 0.." +
                             std::to_string(V - 1) + ", got " + std::to_string(ids[i]));
  }
  if (config_.max_seq_len && seq_len > *config_.max_seq_len)
    return Status::error("tokens: expected at most max_seq_len = " + std::to_string(*config_.max_seq_len) +
                         " positions, got " + std::to_string(seq_len));
  tokens_.assign(tokens, tokens + N);
  patched_.clear();
  const Shape rows = {batch, seq_len, d};
  embed_.resize({N, d});
  embedding_forward(embed_.ptr(), tokens_.data(), P(layout_.embed_weight()), N, d);
  if (hooks_on_) BLOCKLAB_RETURN_IF_ERROR(visit("hook_embed", embed_.ptr(), rows));
  const T* stream_in = embed_.ptr();
  if (config_.max_seq_len) {  // x = token embedding + position embedding
    pos_embed_.resize({N, d});
    stream_in_.resize({N, d});
    for (int64_t n = 0; n < N; ++n) copy_n(pos_embed_.ptr() + n * d, P(layout_.pos_embed_weight()) + (n % seq_len) * d, d);
    if (hooks_on_) BLOCKLAB_RETURN_IF_ERROR(visit("hook_pos_embed", pos_embed_.ptr(), rows));
    for (int64_t i = 0; i < N * d; ++i) stream_in_.data[size_t(i)] = embed_.data[size_t(i)] + pos_embed_.data[size_t(i)];
    stream_in = stream_in_.ptr();
  }
  BLOCKLAB_RETURN_IF_ERROR(forward_stack(stream_in, batch, seq_len, options));
  lm_ran_ = true;
  logits_.resize({N, V});
  linear_forward(logits_.ptr(), y_.ptr(), P(head_weight_offset()), P(layout_.head_bias()), N, d, V);
  if (hooks_on_) BLOCKLAB_RETURN_IF_ERROR(visit("hook_logits", logits_.ptr(), {batch, seq_len, V}));
  has_targets_ = targets != nullptr;
  if (has_targets_) {
    targets_.assign(targets, targets + N);
    probs_.resize({N, V});
    loss_ = cross_entropy_forward(probs_.ptr(), logits_.ptr(), targets_.data(), N, V);
  }
  return Status::ok();
}

template <typename T>
void Model<T>::backward_lm(Grads mode) {
  const int64_t V = *config_.vocab_size, N = batch_ * seq_len_, d = config_.d_model;
  grads();  // allocated by the first backward
  d_logits_.resize({N, V});
  d_logits_.fill(0);
  cross_entropy_backward(d_logits_.ptr(), probs_.ptr(), targets_.data(), 1.0, N, V);
  act_grads_.clear();
  if (hooks_on_) grad_site("hook_logits", d_logits_.ptr(), {batch_, seq_len_, V});
  // backward() zeroes the small gradients in overwrite mode; the head's bias is one of them, so it goes
  // first and the head comes after. A tied head's weight is embed.weight, a small gradient too: its share
  // is always added (onto the zeroes in overwrite mode), and the embedding's own share after it.
  d_y_.fill(0);
  linear_backward(d_y_.ptr(), static_cast<T*>(nullptr), static_cast<T*>(nullptr), d_logits_.ptr(), y_.ptr(),
                  P(head_weight_offset()), N, d, V);
  backward_stack(d_y_.ptr(), d_x_.ptr(), mode);
  linear_backward(static_cast<T*>(nullptr), G(head_weight_offset()), G(layout_.head_bias()), d_logits_.ptr(), y_.ptr(),
                  P(head_weight_offset()), N, d, V, mode == Grads::accumulate || config_.tied_head);
  // d_x_ is the gradient of the first block's input, embed (+ pos_embed): each sees it through its own site.
  const Shape rows = {batch_, seq_len_, d};
  Tensor<T> d_embed, d_pos;
  const T* de = d_x_.ptr();
  const T* dp = d_x_.ptr();
  if (hooks_on_) {
    d_embed = d_x_;
    grad_site("hook_embed", d_embed.ptr(), rows);
    de = d_embed.ptr();
    if (config_.max_seq_len) {
      d_pos = d_x_;
      grad_site("hook_pos_embed", d_pos.ptr(), rows);
      dp = d_pos.ptr();
    }
  }
  embedding_backward(G(layout_.embed_weight()), tokens_.data(), de, N, d);
  if (config_.max_seq_len) {
    T* dpos = G(layout_.pos_embed_weight());
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < d; ++c) dpos[(n % seq_len_) * d + c] += dp[n * d + c];
  }
}

// ---- Trace ---------------------------------------------------------------------------------------

template <typename T>
std::vector<NamedTensor<T>> Model<T>::trace(bool batched) const {
  const int64_t B = batch_, Tn = seq_len_, N = B * Tn, d = config_.d_model, H = config_.n_heads, D = d / H;
  auto per_token = [&](Shape tail) {
    Shape s = batched ? Shape{B, Tn} : Shape{Tn};
    s.insert(s.end(), tail.begin(), tail.end());
    return s;
  };
  std::vector<NamedTensor<T>> out;
  auto add = [&](std::string name, const Tensor<T>& t, Shape shape) {
    out.push_back({std::move(name), Tensor<T>(std::move(shape), t.data)});
  };
  auto add_norm = [&](const std::string& prefix, const NormActs<T>& n, const Tensor<T>& norm_in,
                      const Tensor<T>& norm_out) {
    const bool layernorm = config_.norm == Norm::layernorm;
    if (layernorm) add(prefix + "hook_mean", n.mean, per_token({}));
    add(prefix + "hook_rstd", n.rstd, per_token({}));
    Tensor<T> normalized(per_token({d}));  // (x - mean) * rstd, or x * rstd: recomputed, not stored
    normalized_rows(normalized.ptr(), norm_in.ptr(), layernorm ? n.mean.ptr() : static_cast<const T*>(nullptr),
                    n.rstd.ptr(), N, d);
    out.push_back({prefix + "hook_normalized", std::move(normalized)});
    add(prefix + "hook_out", norm_out, per_token({d}));
  };
  auto add_attention = [&](const std::string& p, const BlockActs<T>& a) {
    // q, k, v: [.., T, heads, d_head] slices of qkv
    for (int part = 0; part < 3; ++part) {
      Tensor<T> t(per_token({H, D}));
      for (int64_t row = 0; row < N; ++row)
        copy_n(t.ptr() + row * d, a.qkv.ptr() + row * 3 * d + part * d, d);
      out.push_back({p + (part == 0 ? "attn.hook_q" : part == 1 ? "attn.hook_k" : "attn.hook_v"), std::move(t)});
    }
    const Shape pattern_shape = batched ? Shape{B, H, Tn, Tn} : Shape{H, Tn, Tn};
    add(p + "attn.hook_scores", a.scores, pattern_shape);
    add(p + "attn.hook_pattern", a.pattern, pattern_shape);
    add(p + "attn.hook_z", a.z, per_token({H, D}));
  };
  auto add_mlp = [&](const std::string& p, const BlockActs<T>& a, const Tensor<T>& mlp_in) {
    add(p + "mlp.hook_in", mlp_in, per_token({d}));
    add(p + "mlp.hook_pre", a.mlp_pre, per_token({config_.d_ff}));
    add(p + "mlp.hook_post", a.mlp_post, per_token({config_.d_ff}));
    add(p + "hook_mlp_out", a.mlp_out, per_token({d}));
  };
  const bool has_norm = config_.norm != Norm::none;
  if (lm_ran_) add("hook_embed", embed_, per_token({d}));
  if (lm_ran_ && config_.max_seq_len) add("hook_pos_embed", pos_embed_, per_token({d}));
  for (int64_t i = 0; i < config_.n_layers; ++i) {
    const BlockActs<T>& a = acts_[size_t(i)];
    const std::string p = "blocks." + std::to_string(i) + ".";
    add(p + "hook_resid_pre", a.resid_pre, per_token({d}));
    if (config_.placement == Placement::pre) {
      if (has_norm) add_norm(p + "ln1.", a.ln1, a.resid_pre, a.ln1.out);
      add_attention(p, a);
      add(p + "hook_attn_out", a.attn_out, per_token({d}));
      add(p + "hook_resid_mid", a.resid_mid, per_token({d}));
      if (has_norm) add_norm(p + "ln2.", a.ln2, a.resid_mid, a.ln2.out);
      add_mlp(p, a, has_norm ? a.ln2.out : a.resid_mid);
    } else {
      add_attention(p, a);
      add(p + "hook_attn_out", a.attn_out, per_token({d}));
      add(p + "hook_sum1", a.sum1, per_token({d}));
      if (has_norm) add_norm(p + "ln1.", a.ln1, a.sum1, a.resid_mid);
      add(p + "hook_resid_mid", a.resid_mid, per_token({d}));
      add_mlp(p, a, a.resid_mid);
      add(p + "hook_sum2", a.sum2, per_token({d}));
      if (has_norm) add_norm(p + "ln2.", a.ln2, a.sum2, a.resid_post);
    }
    add(p + "hook_resid_post", a.resid_post, per_token({d}));
  }
  if (config_.final_norm) add_norm("ln_final.", ln_final_, acts_.back().resid_post, ln_final_.out);
  if (lm_ran_) add("hook_logits", logits_, per_token({*config_.vocab_size}));
  return out;
}

template class Model<float>;
template class Model<double>;

}  // namespace blocklab
