#include "engine/model.h"

#include <algorithm>
#include <utility>

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

}  // namespace

template <typename T>
Model<T>::Model(const ModelConfig& config)
    : config_(config),
      layout_(config),
      params_(size_t(layout_.total()), T(0)),
      grads_(size_t(layout_.total()), T(0)) {
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
void Model<T>::zero_grads() {
  std::fill(grads_.begin(), grads_.end(), T(0));
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
void Model<T>::attention_sublayer_forward(int64_t layer, const T* inp, const ForwardOptions& options) {
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
  attention_forward(a.z.ptr(), a.scores.ptr(), a.pattern.ptr(), a.qkv.ptr(), drop ? a.mask_pattern.ptr() : nullptr,
                    attn_scratch_.ptr(), batch_, seq_len_, d, H, config_.causal);
  linear_forward(a.attn_out.ptr(), a.z.ptr(), P(o.out_proj_weight), P(o.out_proj_bias), N, d, d);
  if (drop) {
    a.mask_attn.resize({N, d});
    dropout_mask(a.mask_attn.ptr(), N * d, config_.dropout, options.dropout_seed, dropout_stream(layer, kSiteAttnOut));
    dropout_forward(a.attn_out.ptr(), a.attn_out.ptr(), a.mask_attn.ptr(), N * d);
  }
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
  linear_backward(d_z_.ptr(), G(o.out_proj_weight), G(o.out_proj_bias), d_proj, a.z.ptr(), P(o.out_proj_weight), N,
                  d, d, !overwrite_weights_);
  d_qkv_.fill(0);
  attention_backward(d_qkv_.ptr(), d_z_.ptr(), a.qkv.ptr(), a.pattern.ptr(),
                     dropout_was_active_ ? a.mask_pattern.ptr() : nullptr, attn_scratch_.ptr(), batch_, seq_len_, d,
                     H);
  linear_backward(dinp, G(o.in_proj_weight), G(o.in_proj_bias), d_qkv_.ptr(), inp, P(o.in_proj_weight), N, d,
                  3 * d, !overwrite_weights_);
}

// [web:ffn-forward begin] (the web app shows this code beside the FFN widget, extracted at build time)
template <typename T>
void Model<T>::ffn_sublayer_forward(int64_t layer, const T* inp, const ForwardOptions& options) {
  BlockActs<T>& a = acts_[size_t(layer)];
  const BlockOffsets& o = layout_.block(layer);
  const int64_t N = batch_ * seq_len_, d = config_.d_model, f = config_.d_ff;
  const bool drop = dropout_active(options);
  linear_forward(a.mlp_pre.ptr(), inp, P(o.linear1_weight), P(o.linear1_bias), N, d, f);
  activation_forward(config_.activation, a.mlp_post.ptr(), a.mlp_pre.ptr(), N * f);
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
  d_pre_.fill(0);
  activation_backward(config_.activation, d_pre_.ptr(), a.mlp_pre.ptr(), d_hidden_.ptr(), N * f);
  linear_backward(dinp, G(o.linear1_weight), G(o.linear1_bias), d_pre_.ptr(), inp, P(o.linear1_weight), N, d, f,
                  !overwrite_weights_);
}

// ---- One block ---------------------------------------------------------------------------------

template <typename T>
void Model<T>::block_forward(int64_t layer, const ForwardOptions& options) {
  BlockActs<T>& a = acts_[size_t(layer)];
  const BlockOffsets& o = layout_.block(layer);
  const int64_t n = batch_ * seq_len_ * config_.d_model;
  const T alpha = o.alpha >= 0 ? *P(o.alpha) : T(config_.residual_alpha);
  const bool res = config_.residual;
  const bool has_norm = config_.norm != Norm::none;
  if (config_.placement == Placement::pre) {
    // mid = r(x, Attn(N1(x)))
    const T* attn_in = a.resid_pre.ptr();
    if (has_norm) {
      norm_forward(P(o.norm1_weight), P(o.norm1_bias), a.ln1, a.ln1.out.ptr(), a.resid_pre.ptr());
      attn_in = a.ln1.out.ptr();
    }
    attention_sublayer_forward(layer, attn_in, options);
    residual_forward(a.resid_mid.ptr(), a.resid_pre.ptr(), a.attn_out.ptr(), alpha, res, n);
    // out = r(mid, FFN(N2(mid)))
    const T* ffn_in = a.resid_mid.ptr();
    if (has_norm) {
      norm_forward(P(o.norm2_weight), P(o.norm2_bias), a.ln2, a.ln2.out.ptr(), a.resid_mid.ptr());
      ffn_in = a.ln2.out.ptr();
    }
    ffn_sublayer_forward(layer, ffn_in, options);
    residual_forward(a.resid_post.ptr(), a.resid_mid.ptr(), a.mlp_out.ptr(), alpha, res, n);
  } else {
    // mid = N1(r(x, Attn(x)))
    attention_sublayer_forward(layer, a.resid_pre.ptr(), options);
    residual_forward(a.sum1.ptr(), a.resid_pre.ptr(), a.attn_out.ptr(), alpha, res, n);
    norm_forward(P(o.norm1_weight), P(o.norm1_bias), a.ln1, a.resid_mid.ptr(), a.sum1.ptr());
    // out = N2(r(mid, FFN(mid)))
    ffn_sublayer_forward(layer, a.resid_mid.ptr(), options);
    residual_forward(a.sum2.ptr(), a.resid_mid.ptr(), a.mlp_out.ptr(), alpha, res, n);
    norm_forward(P(o.norm2_weight), P(o.norm2_bias), a.ln2, a.resid_post.ptr(), a.sum2.ptr());
  }
}

template <typename T>
void Model<T>::block_backward(int64_t layer, T* dresid_post, T* dresid_pre) {
  const BlockActs<T>& a = acts_[size_t(layer)];
  const BlockOffsets& o = layout_.block(layer);
  const int64_t n = batch_ * seq_len_ * config_.d_model;
  const T alpha = o.alpha >= 0 ? *P(o.alpha) : T(config_.residual_alpha);
  T* dalpha = G(o.alpha);  // null unless alpha is learnable
  const bool res = config_.residual;
  const bool has_norm = config_.norm != Norm::none;
  T* d_mid = d_mid_.ptr();
  T* d_sub = d_sub_in_.ptr();
  // d_inc_ holds the gradient of a sub-layer's increment f (d_f_ is the sub-layers' own scratch).
  if (config_.placement == Placement::pre) {
    std::fill(d_mid, d_mid + n, T(0));
    d_inc_.fill(0);
    residual_backward(d_mid, d_inc_.ptr(), dalpha, dresid_post, a.mlp_out.ptr(), alpha, res, n);
    if (has_norm) {
      std::fill(d_sub, d_sub + n, T(0));
      ffn_sublayer_backward(layer, a.ln2.out.ptr(), d_inc_.ptr(), d_sub);
      norm_backward(P(o.norm2_weight), G(o.norm2_weight), G(o.norm2_bias), a.ln2, a.resid_mid.ptr(), d_sub, d_mid);
    } else {
      ffn_sublayer_backward(layer, a.resid_mid.ptr(), d_inc_.ptr(), d_mid);
    }
    d_inc_.fill(0);
    residual_backward(dresid_pre, d_inc_.ptr(), dalpha, d_mid, a.attn_out.ptr(), alpha, res, n);
    if (has_norm) {
      std::fill(d_sub, d_sub + n, T(0));
      attention_sublayer_backward(layer, a.ln1.out.ptr(), d_inc_.ptr(), d_sub);
      norm_backward(P(o.norm1_weight), G(o.norm1_weight), G(o.norm1_bias), a.ln1, a.resid_pre.ptr(), d_sub, dresid_pre);
    } else {
      attention_sublayer_backward(layer, a.resid_pre.ptr(), d_inc_.ptr(), dresid_pre);
    }
  } else {
    T* d_sum = d_sub;
    std::fill(d_sum, d_sum + n, T(0));
    norm_backward(P(o.norm2_weight), G(o.norm2_weight), G(o.norm2_bias), a.ln2, a.sum2.ptr(), dresid_post, d_sum);
    std::fill(d_mid, d_mid + n, T(0));
    d_inc_.fill(0);
    residual_backward(d_mid, d_inc_.ptr(), dalpha, d_sum, a.mlp_out.ptr(), alpha, res, n);
    ffn_sublayer_backward(layer, a.resid_mid.ptr(), d_inc_.ptr(), d_mid);
    std::fill(d_sum, d_sum + n, T(0));
    norm_backward(P(o.norm1_weight), G(o.norm1_weight), G(o.norm1_bias), a.ln1, a.sum1.ptr(), d_mid, d_sum);
    d_inc_.fill(0);
    residual_backward(dresid_pre, d_inc_.ptr(), dalpha, d_sum, a.attn_out.ptr(), alpha, res, n);
    attention_sublayer_backward(layer, a.resid_pre.ptr(), d_inc_.ptr(), dresid_pre);
  }
}

// ---- The stack -----------------------------------------------------------------------------------

template <typename T>
Status Model<T>::forward(const T* x, int64_t batch, int64_t seq_len, const ForwardOptions& options) {
  if (batch < 1) return Status::error("input: expected batch >= 1, got " + std::to_string(batch));
  if (seq_len < 1) return Status::error("input: expected sequence length >= 1, got " + std::to_string(seq_len));
  resize_workspace(batch, seq_len);
  lm_ran_ = false;
  dropout_was_active_ = dropout_active(options);
  const int64_t n = batch * seq_len * config_.d_model;
  copy_n(acts_[0].resid_pre.ptr(), x, n);
  for (int64_t i = 0; i < config_.n_layers; ++i) {
    block_forward(i, options);
    if (i + 1 < config_.n_layers) copy_n(acts_[size_t(i + 1)].resid_pre.ptr(), acts_[size_t(i)].resid_post.ptr(), n);
  }
  const T* last = acts_.back().resid_post.ptr();
  if (config_.final_norm) {
    norm_forward(P(layout_.final_norm_weight()), P(layout_.final_norm_bias()), ln_final_, ln_final_.out.ptr(), last);
    last = ln_final_.out.ptr();
  }
  copy_n(y_.ptr(), last, n);
  has_targets_ = false;
  return Status::ok();
}

template <typename T>
void Model<T>::backward(const T* dy, T* dx, Grads mode) {
  const int64_t n = batch_ * seq_len_ * config_.d_model;
  overwrite_weights_ = mode == Grads::overwrite;
  if (overwrite_weights_)
    for (auto [offset, count] : small_param_ranges_) std::fill(grads_.begin() + offset, grads_.begin() + offset + count, T(0));
  Tensor<T>* d_cur = &d_stream_a_;   // dLoss / d(current residual stream)
  Tensor<T>* d_next = &d_stream_b_;
  if (config_.final_norm) {
    d_cur->fill(0);
    norm_backward(P(layout_.final_norm_weight()), G(layout_.final_norm_weight()), G(layout_.final_norm_bias()),
                  ln_final_, acts_.back().resid_post.ptr(), dy, d_cur->ptr());
  } else {
    copy_n(d_cur->ptr(), dy, n);
  }
  for (int64_t i = config_.n_layers - 1; i >= 0; --i) {
    d_next->fill(0);
    block_backward(i, d_cur->ptr(), d_next->ptr());
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
  embed_.resize({N, d});
  embedding_forward(embed_.ptr(), tokens_.data(), P(layout_.embed_weight()), N, d);
  const T* stream_in = embed_.ptr();
  if (config_.max_seq_len) {  // x = token embedding + position embedding
    pos_embed_.resize({N, d});
    stream_in_.resize({N, d});
    for (int64_t n = 0; n < N; ++n) copy_n(pos_embed_.ptr() + n * d, P(layout_.pos_embed_weight()) + (n % seq_len) * d, d);
    for (int64_t i = 0; i < N * d; ++i) stream_in_.data[size_t(i)] = embed_.data[size_t(i)] + pos_embed_.data[size_t(i)];
    stream_in = stream_in_.ptr();
  }
  BLOCKLAB_RETURN_IF_ERROR(forward(stream_in, batch, seq_len, options));
  lm_ran_ = true;
  logits_.resize({N, V});
  linear_forward(logits_.ptr(), y_.ptr(), P(layout_.head_weight()), P(layout_.head_bias()), N, d, V);
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
  d_logits_.resize({N, V});
  d_logits_.fill(0);
  cross_entropy_backward(d_logits_.ptr(), probs_.ptr(), targets_.data(), 1.0, N, V);
  // backward() zeroes the small gradients in overwrite mode; the head's bias is one of them, so it goes
  // first and the head comes after.
  d_y_.fill(0);
  linear_backward(d_y_.ptr(), static_cast<T*>(nullptr), static_cast<T*>(nullptr), d_logits_.ptr(), y_.ptr(),
                  P(layout_.head_weight()), N, d, V);
  backward(d_y_.ptr(), d_x_.ptr(), mode);
  linear_backward(static_cast<T*>(nullptr), G(layout_.head_weight()), G(layout_.head_bias()), d_logits_.ptr(), y_.ptr(),
                  P(layout_.head_weight()), N, d, V, mode == Grads::accumulate);
  embedding_backward(G(layout_.embed_weight()), tokens_.data(), d_x_.ptr(), N, d);
  if (config_.max_seq_len) {
    T* dpos = G(layout_.pos_embed_weight());
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < d; ++c) dpos[(n % seq_len_) * d + c] += d_x_.data[size_t(n * d + c)];
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
    for (int64_t row = 0; row < N; ++row)
      for (int64_t c = 0; c < d; ++c)
        normalized.data[size_t(row * d + c)] =
            (norm_in.data[size_t(row * d + c)] - (layernorm ? n.mean.data[size_t(row)] : T(0))) * n.rstd.data[size_t(row)];
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
