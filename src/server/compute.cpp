#include "server/compute.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <list>
#include <mutex>
#include <numeric>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "engine/kernels.h"
#include "engine/model.h"
#include "io/model_file.h"
#include "lab/gradflow.h"
#include "lab/trainer.h"

namespace blocklab::server {

namespace {

using Vec = std::vector<float>;

Vec to_float(const std::vector<double>& v) { return Vec(v.begin(), v.end()); }

json rows_json(const float* data, int64_t rows, int64_t cols) { return nested(data, {rows, cols}); }
json vec_json(const Vec& v) { return nested(v.data(), {int64_t(v.size())}); }

// A statistic computed in float32 as the kernels do (`f`), or, where that overflows float32 although the
// true value is finite (the variance of [1e20, -1e20]: 1e40), the same computed in float64 (`d`).
json wide_json(float f, double d) { return std::isfinite(f) ? nested(&f, {}) : json(d); }
json wide_rows(const Vec& f, const std::vector<double>& d, int64_t rows, int64_t cols) {
  json out = json::array();
  for (int64_t r = 0; r < rows; ++r) {
    json row = json::array();
    for (int64_t c = 0; c < cols; ++c) row.push_back(wide_json(f[size_t(r * cols + c)], d[size_t(r * cols + c)]));
    out.push_back(std::move(row));
  }
  return out;
}
json wide_vec(const Vec& f, const std::vector<double>& d) {
  json out = json::array();
  for (size_t i = 0; i < f.size(); ++i) out.push_back(wide_json(f[i], d[i]));
  return out;
}

std::shared_ptr<const LoadedModel> need_model(const json& req, const ModelRegistry& models, const std::string& field = "model") {
  const json& id = required_field(req, field);
  if (!id.is_string()) bad_field(field, "a model id from GET /api/models", id);
  std::shared_ptr<const LoadedModel> m = models.get(id.get<std::string>());
  if (!m)
    throw ApiError(404, "unknown_model", field + ": no model '" + id.get<std::string>() + "' (see GET /api/models)", field);
  return m;
}

// 422 when a result computed in float32 from in-range inputs is not finite: its true value is beyond
// float32 (|v| > 3.4e38), and an answer with null in it would be wrong. `field` is the input to make smaller.
void require_finite(const float* v, int64_t n, const std::vector<int64_t>& shape, const std::string& what,
                    const std::string& field, const std::string& advice) {
  for (int64_t i = 0; i < n; ++i) {
    if (std::isfinite(v[i])) continue;
    std::string where = what;
    int64_t rest = i, stride = n;
    for (int64_t dim : shape) {
      stride /= std::max<int64_t>(dim, 1);
      where += "[" + std::to_string(rest / std::max<int64_t>(stride, 1)) + "]";
      rest %= std::max<int64_t>(stride, 1);
    }
    throw ApiError(422, "overflow",
                   where + ": expected a result within float32 (|v| <= 3.4e38), got " +
                       (std::isnan(v[i]) ? std::string("NaN") : std::string(v[i] > 0 ? "+inf" : "-inf")) +
                       " (the true value overflows float32): " + advice,
                   field);
  }
}

void check_cost(double gflop, const Limits& limits, const std::string& field) {
  if (gflop > limits.max_request_gflop) {
    char msg[160];
    std::snprintf(msg, sizeof msg, "the request would take about %.2f GFLOP: expected at most %.2f (make it smaller)", gflop,
                  limits.max_request_gflop);
    throw ApiError(413, "too_costly", field + ": " + msg, field);
  }
}

}  // namespace

json model_info_json(const ModelInfo& info) {
  return {{"id", info.id},
          {"source", info.source},
          {"description", info.description},
          {"config", io::config_to_json(info.config)},
          {"task", info.task ? json(*info.task) : json(nullptr)},
          {"alphabet", info.alphabet ? json(*info.alphabet) : json(nullptr)},
          {"steps", info.steps},
          {"n_params", info.n_params},
          {"bytes", info.bytes}};
}

double estimate_gflop(const ModelConfig& c, int64_t tokens, bool backward) {
  const double d = double(c.d_model), f = double(c.d_ff), T = double(tokens);
  // per token per layer: in_proj 6d^2, out_proj 2d^2, FFN 4 d f, attention 4 T d
  double per_layer = T * (8 * d * d + 4 * d * f + 4 * T * d);
  double total = per_layer * double(c.n_layers);
  if (c.vocab_size) total += T * 2 * d * double(*c.vocab_size);
  return total * (backward ? 3 : 1) / 1e9;
}

Status check_config_limits(const ModelConfig& c, const Limits& L) {
  auto over = [](const char* key, int64_t v, int64_t max) {
    return Status::error(std::string("config key '") + key + "': expected at most " + std::to_string(max) +
                         " (the server's limit), got " + std::to_string(v));
  };
  if (c.d_model > L.max_d_model) return over("d_model", c.d_model, L.max_d_model);
  if (c.n_heads > L.max_heads) return over("n_heads", c.n_heads, L.max_heads);
  if (c.d_ff > L.max_d_ff) return over("d_ff", c.d_ff, L.max_d_ff);
  if (c.n_layers > L.max_layers) return over("n_layers", c.n_layers, L.max_layers);
  return Status::ok();
}

ModelConfig read_model_config(const json& req, const Limits& L, const std::string& prefix) {
  ModelConfig c;
  c.d_model = read_integer(req, "d_model", c.d_model, 1, L.max_d_model, prefix);
  c.n_heads = read_integer(req, "n_heads", c.n_heads, 1, L.max_heads, prefix);
  c.d_ff = read_integer(req, "d_ff", c.d_ff, 1, L.max_d_ff, prefix);
  c.n_layers = read_integer(req, "n_layers", c.n_layers, 1, L.max_layers, prefix);
  c.norm = *parse_norm(read_choice(req, "norm", "layernorm", {"layernorm", "rmsnorm", "none"}, prefix));
  c.placement = *parse_placement(read_choice(req, "placement", "pre", {"pre", "post"}, prefix));
  c.activation = *parse_activation(read_choice(req, "activation", "gelu", {"relu", "gelu", "gelu_tanh"}, prefix));
  c.residual = read_bool(req, "residual", true, prefix);
  c.residual_alpha = read_number(req, "residual_alpha", read_number(req, "alpha", 1.0, -100, 100, prefix), -100, 100, prefix);
  c.eps = read_number(req, "eps", 1e-5, 1e-12, 1, prefix);
  c.final_norm = read_bool(req, "final_norm", false, prefix);
  c.causal = read_bool(req, "causal", false, prefix);
  c.dropout = read_number(req, "dropout", 0.0, 0, 0.99, prefix);
  Status st = validate(c);
  if (st) st = check_config_limits(c, L);
  if (!st) {
    const std::string& msg = st.message();  // "config key 'n_heads': expected ..."
    const size_t a = msg.find('\''), b = msg.find('\'', a + 1);
    const std::string key = a != std::string::npos && b != std::string::npos ? msg.substr(a + 1, b - a - 1) : "";
    throw ApiError(400, "bad_config", msg, prefix.empty() ? key : prefix + "." + key);
  }
  return c;
}

// ---- Residual ------------------------------------------------------------------------------------

namespace {

// f = the model's sub-layer applied to rows x (one sequence), as inside block `layer`: pre placement
// normalises x first (the sub-layer's own norm), post placement feeds x as it is.
Vec sublayer_increment(const LoadedModel& lm, int64_t layer, const std::string& kind, const Vec& x, int64_t T) {
  const ModelConfig& c = lm.model.config();
  const int64_t d = c.d_model, F = c.d_ff, H = c.n_heads;
  const BlockOffsets& o = lm.model.layout().block(layer);
  const float* P = lm.model.params().data();
  const bool attention = kind == "attention";
  Vec in = x;
  if (c.placement == Placement::pre && c.norm != Norm::none) {
    Vec mean(static_cast<size_t>(T)), rstd(static_cast<size_t>(T));
    const int64_t w = attention ? o.norm1_weight : o.norm2_weight, b = attention ? o.norm1_bias : o.norm2_bias;
    if (c.norm == Norm::layernorm)
      layernorm_forward(in.data(), mean.data(), rstd.data(), x.data(), P + w, P + b, T, d, c.eps);
    else
      rmsnorm_forward(in.data(), rstd.data(), x.data(), P + w, T, d, c.eps);
  }
  Vec f(static_cast<size_t>(T * d));
  if (attention) {
    Vec qkv(static_cast<size_t>(T * 3 * d)), z(static_cast<size_t>(T * d)), scores(static_cast<size_t>(H * T * T)), pattern(scores.size()), scratch(static_cast<size_t>(T * T));
    linear_forward(qkv.data(), in.data(), P + o.in_proj_weight, P + o.in_proj_bias, T, d, 3 * d);
    attention_forward(z.data(), scores.data(), pattern.data(), qkv.data(), static_cast<const float*>(nullptr),
                      scratch.data(), 1, T, d, H, c.causal);
    linear_forward(f.data(), z.data(), P + o.out_proj_weight, P + o.out_proj_bias, T, d, d);
  } else {
    Vec pre(static_cast<size_t>(T * F)), post(pre.size());
    linear_forward(pre.data(), in.data(), P + o.linear1_weight, P + o.linear1_bias, T, d, F);
    activation_forward(c.activation, post.data(), pre.data(), T * F);
    linear_forward(f.data(), post.data(), P + o.linear2_weight, P + o.linear2_bias, T, F, d);
  }
  return f;
}

double norm2(const float* v, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(v[i]) * v[i];
  return std::sqrt(s);
}

}  // namespace

json compute_residual(const json& req, const ModelRegistry& models, const Limits& L) {
  reject_unknown_keys(req, {"x", "f", "alpha", "residual", "sublayer"});
  const Matrix xm = read_matrix(req, "x", L.max_tokens, L.max_d_model);
  const double alpha = read_number(req, "alpha", 1.0, -100, 100);
  const bool residual = read_bool(req, "residual", true);
  const int64_t T = xm.rows, d = xm.cols;
  const Vec x = to_float(xm.data);
  Vec f;
  json source;
  if (const json* sub = optional_field(req, "sublayer")) {
    if (optional_field(req, "f")) throw ApiError(400, "bad_request", "f: expected either f or sublayer, not both", "f");
    if (!sub->is_object()) bad_field("sublayer", "an object {model, layer, kind}", *sub);
    reject_unknown_keys(*sub, {"model", "layer", "kind"}, "sublayer");
    std::shared_ptr<const LoadedModel> lm = need_model(*sub, models);
    const ModelConfig& c = lm->model.config();
    if (d != c.d_model) bad_field("x", "rows of width d_model = " + std::to_string(c.d_model) + " (the model's)", json(std::to_string(d) + " columns"));
    const int64_t layer = read_integer(*sub, "layer", 0, 0, c.n_layers - 1, "sublayer");
    const std::string kind = read_choice(*sub, "kind", "ffn", {"ffn", "attention"}, "sublayer");
    f = sublayer_increment(*lm, layer, kind, x, T);
    source = {{"model", lm->info.id}, {"layer", layer}, {"kind", kind}};
  } else {
    const Matrix fm = read_matrix(req, "f", L.max_tokens, L.max_d_model);
    if (fm.rows != T || fm.cols != d)
      bad_field("f", "the shape of x [" + std::to_string(T) + ", " + std::to_string(d) + "]",
                json("[" + std::to_string(fm.rows) + ", " + std::to_string(fm.cols) + "]"));
    f = to_float(fm.data);
    source = "given";
  }
  require_finite(f.data(), T * d, {T, d}, "f", "x", "the sub-layer's output overflows float32: make x smaller");
  Vec out(x.size());
  residual_forward(out.data(), x.data(), f.data(), float(alpha), residual, T * d);
  require_finite(out.data(), T * d, {T, d}, "out", "alpha", "make x, f or alpha smaller");
  json norms = json::array();
  for (int64_t r = 0; r < T; ++r) {
    const double nx = norm2(x.data() + r * d, d), nf = norm2(f.data() + r * d, d), no = norm2(out.data() + r * d, d);
    double dot = 0;
    for (int64_t k = 0; k < d; ++k) dot += double(x[size_t(r * d + k)]) * out[size_t(r * d + k)];
    norms.push_back({{"x", nx}, {"f", nf}, {"out", no}, {"cos_x_out", nx > 0 && no > 0 ? json(dot / (nx * no)) : json(nullptr)}});
  }
  return {{"x", rows_json(x.data(), T, d)},   {"f", rows_json(f.data(), T, d)},
          {"alpha", alpha},                   {"residual", residual},
          {"out", rows_json(out.data(), T, d)}, {"norms", norms},
          {"increment_source", source},       {"formula", residual ? "out = x + alpha * f" : "out = f"}};
}

// ---- Norms ---------------------------------------------------------------------------------------

namespace {

struct NormRequest {
  Matrix x;
  Vec gamma, beta;
  double eps;
  int64_t row;
};

NormRequest read_norm_request(const json& req, const Limits& L, bool with_beta) {
  reject_unknown_keys(req, with_beta ? std::vector<std::string>{"x", "gamma", "beta", "eps", "row"}
                                     : std::vector<std::string>{"x", "gamma", "eps", "row"});
  NormRequest r;
  r.x = read_matrix(req, "x", L.max_tokens, L.max_d_model);
  r.gamma = to_float(read_vector(req, "gamma", r.x.cols, 1.0));
  if (with_beta) r.beta = to_float(read_vector(req, "beta", r.x.cols, 0.0));
  r.eps = read_number(req, "eps", 1e-5, 1e-12, 1.0);
  r.row = read_integer(req, "row", 0, 0, r.x.rows - 1);
  return r;
}

}  // namespace

json compute_layernorm(const json& req, const Limits& L) {
  const NormRequest r = read_norm_request(req, L, true);
  const int64_t T = r.x.rows, d = r.x.cols;
  const Vec x = to_float(r.x.data);
  Vec out(x.size()), mean(static_cast<size_t>(T)), rstd(static_cast<size_t>(T));
  layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), r.gamma.data(), r.beta.data(), T, d, r.eps);
  require_finite(out.data(), T * d, {T, d}, "out", "gamma", "make gamma or beta smaller");
  // As the kernel computes them in float32; where a value overflows float32 (x - mean for x near
  // +-3.4e38, the variance of large values) the float64 value is answered instead (wide_json).
  Vec centered(x.size()), normalized(x.size()), var(static_cast<size_t>(T)), stdv(static_cast<size_t>(T));
  std::vector<double> centered_d(x.size()), normalized_d(x.size()), var_d(static_cast<size_t>(T)), std_d(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    double sq = 0;
    for (int64_t k = 0; k < d; ++k) {
      const size_t i = size_t(t * d + k);
      centered[i] = x[i] - mean[size_t(t)];
      normalized[i] = centered[i] * rstd[size_t(t)];  // as the kernel computes it
      centered_d[i] = double(x[i]) - double(mean[size_t(t)]);
      normalized_d[i] = centered_d[i] * double(rstd[size_t(t)]);
      sq += centered_d[i] * centered_d[i];
    }
    var_d[size_t(t)] = sq / double(d);  // biased, as the kernel
    var[size_t(t)] = float(var_d[size_t(t)]);
    stdv[size_t(t)] = 1.0f / rstd[size_t(t)];  // sqrt(var + eps)
    std_d[size_t(t)] = 1.0 / double(rstd[size_t(t)]);
  }
  return {{"mean", vec_json(mean)},
          {"var", wide_vec(var, var_d)},
          {"std", wide_vec(stdv, std_d)},
          {"rstd", vec_json(rstd)},
          {"centered", wide_rows(centered, centered_d, T, d)},
          {"normalized", wide_rows(normalized, normalized_d, T, d)},
          {"out", rows_json(out.data(), T, d)},
          {"gamma", vec_json(r.gamma)},
          {"beta", vec_json(r.beta)},
          {"eps", r.eps},
          {"row", r.row},
          {"formula", "out = gamma * (x - mean) / sqrt(var + eps) + beta; var biased (divide by d)"}};
}

json compute_rmsnorm(const json& req, const Limits& L) {
  const NormRequest r = read_norm_request(req, L, false);
  const int64_t T = r.x.rows, d = r.x.cols;
  const Vec x = to_float(r.x.data);
  Vec out(x.size()), normalized(x.size()), rstd(static_cast<size_t>(T)), rms(static_cast<size_t>(T)), mean_sq(static_cast<size_t>(T));
  rmsnorm_forward(out.data(), rstd.data(), x.data(), r.gamma.data(), T, d, r.eps);
  require_finite(out.data(), T * d, {T, d}, "out", "gamma", "make gamma smaller");
  std::vector<double> mean_sq_d(static_cast<size_t>(T)), rms_d(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    double sq = 0;
    for (int64_t k = 0; k < d; ++k) {
      sq += double(x[size_t(t * d + k)]) * x[size_t(t * d + k)];  // float64: never overflows for float32 x
      normalized[size_t(t * d + k)] = x[size_t(t * d + k)] * rstd[size_t(t)];
    }
    mean_sq_d[size_t(t)] = sq / double(d);
    mean_sq[size_t(t)] = float(mean_sq_d[size_t(t)]);  // beyond float32 for |x| > 1.8e19: answered in float64
    rms[size_t(t)] = 1.0f / rstd[size_t(t)];  // sqrt(mean(x^2) + eps)
    rms_d[size_t(t)] = 1.0 / double(rstd[size_t(t)]);
  }
  return {{"mean_square", wide_vec(mean_sq, mean_sq_d)},
          {"rms", wide_vec(rms, rms_d)},
          {"rstd", vec_json(rstd)},
          {"normalized", rows_json(normalized.data(), T, d)},
          {"out", rows_json(out.data(), T, d)},
          {"gamma", vec_json(r.gamma)},
          {"eps", r.eps},
          {"row", r.row},
          {"formula", "out = gamma * x / sqrt(mean(x^2) + eps)"}};
}

json compute_batchnorm(const json& req, const Limits& L) {
  // Normalise each feature over the batch axis (the rows), with the batch's own statistics (training
  // mode): the same kernel as LayerNorm, on the transposed matrix.
  const NormRequest r = read_norm_request(req, L, true);
  const int64_t T = r.x.rows, d = r.x.cols;
  if (T < 2) bad_field("x", "at least 2 rows (BatchNorm normalises each feature over the rows)", json("1 row"));
  const Vec x = to_float(r.x.data);
  Vec xt(x.size());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < d; ++k) xt[size_t(k * T + t)] = x[size_t(t * d + k)];
  const Vec ones(size_t(T), 1.0f), zeros(size_t(T), 0.0f);
  Vec nt(x.size()), mean(static_cast<size_t>(d)), rstd(static_cast<size_t>(d));
  layernorm_forward(nt.data(), mean.data(), rstd.data(), xt.data(), ones.data(), zeros.data(), d, T, r.eps);
  Vec normalized(x.size()), out(x.size()), var(static_cast<size_t>(d)), stdv(static_cast<size_t>(d));
  std::vector<double> var_d(static_cast<size_t>(d)), std_d(static_cast<size_t>(d));
  for (int64_t k = 0; k < d; ++k) {
    double sq = 0;
    for (int64_t t = 0; t < T; ++t) {
      normalized[size_t(t * d + k)] = nt[size_t(k * T + t)];
      out[size_t(t * d + k)] = r.gamma[size_t(k)] * nt[size_t(k * T + t)] + r.beta[size_t(k)];
      const double c = double(xt[size_t(k * T + t)]) - mean[size_t(k)];
      sq += c * c;
    }
    var_d[size_t(k)] = sq / double(T);
    var[size_t(k)] = float(var_d[size_t(k)]);
    stdv[size_t(k)] = 1.0f / rstd[size_t(k)];
    std_d[size_t(k)] = 1.0 / double(rstd[size_t(k)]);
  }
  require_finite(out.data(), T * d, {T, d}, "out", "gamma", "make gamma or beta smaller");
  return {{"mean", vec_json(mean)},
          {"var", wide_vec(var, var_d)},
          {"std", wide_vec(stdv, std_d)},
          {"normalized", rows_json(normalized.data(), T, d)},
          {"out", rows_json(out.data(), T, d)},
          {"gamma", vec_json(r.gamma)},
          {"beta", vec_json(r.beta)},
          {"eps", r.eps},
          {"row", r.row},
          {"formula", "per feature j over the batch rows: out = gamma_j * (x_j - mean_j) / sqrt(var_j + eps) + beta_j"}};
}

// ---- FFN -----------------------------------------------------------------------------------------

json compute_ffn(const json& req, const ModelRegistry& models, const Limits& L) {
  reject_unknown_keys(req, {"x", "model", "layer", "activation", "w1", "b1", "w2", "b2", "init", "top_k"});
  const Matrix xm = read_matrix(req, "x", L.max_tokens, L.max_d_model);
  const int64_t T = xm.rows, d = xm.cols;
  const int64_t top_k = read_integer(req, "top_k", 8, 1, 64);
  Vec w1, b1, w2, b2;
  int64_t F = 0;
  json source;
  Activation act = Activation::gelu;
  const int sources = int(optional_field(req, "model") != nullptr) + int(optional_field(req, "init") != nullptr) +
                      int(optional_field(req, "w1") != nullptr);
  if (sources > 1)
    throw ApiError(400, "bad_request", "weights: expected one of model, init or explicit w1/b1/w2/b2, got " +
                                           std::to_string(sources), "model");
  if (const json* init = optional_field(req, "init")) {
    // Fresh weights of any width, PyTorch's nn.Linear initialisation, deterministic per seed.
    if (!init->is_object()) bad_field("init", "an object {d_ff, seed}", *init);
    reject_unknown_keys(*init, {"d_ff", "seed"}, "init");
    ModelConfig c;
    c.d_model = d;
    c.n_heads = 1;
    c.d_ff = read_integer(*init, "d_ff", 2 * d, 1, L.max_d_ff, "init");
    c.n_layers = 1;
    c.norm = Norm::none;
    Model<float> fresh = std::move(Model<float>::create(c).value());
    init_parameters(fresh.layout(), uint64_t(read_integer(*init, "seed", 0, 0, int64_t(1) << 53, "init")),
                    fresh.params().data());
    const BlockOffsets& o = fresh.layout().block(0);
    F = c.d_ff;
    const float* P = fresh.params().data();
    w1.assign(P + o.linear1_weight, P + o.linear1_weight + F * d);
    b1.assign(P + o.linear1_bias, P + o.linear1_bias + F);
    w2.assign(P + o.linear2_weight, P + o.linear2_weight + d * F);
    b2.assign(P + o.linear2_bias, P + o.linear2_bias + d);
    source = {{"init", {{"d_ff", F}, {"seed", read_integer(*init, "seed", 0, 0, int64_t(1) << 53, "init")}}}};
  } else if (optional_field(req, "model")) {
    std::shared_ptr<const LoadedModel> lm = need_model(req, models);
    const ModelConfig& c = lm->model.config();
    if (d != c.d_model)
      bad_field("x", "rows of width d_model = " + std::to_string(c.d_model) + " (the model's)", json(std::to_string(d) + " columns"));
    const int64_t layer = read_integer(req, "layer", 0, 0, c.n_layers - 1);
    const BlockOffsets& o = lm->model.layout().block(layer);
    F = c.d_ff;
    const float* P = lm->model.params().data();
    w1.assign(P + o.linear1_weight, P + o.linear1_weight + F * d);
    b1.assign(P + o.linear1_bias, P + o.linear1_bias + F);
    w2.assign(P + o.linear2_weight, P + o.linear2_weight + d * F);
    b2.assign(P + o.linear2_bias, P + o.linear2_bias + d);
    act = c.activation;
    source = {{"model", lm->info.id}, {"layer", layer}};
  } else {
    const Matrix m1 = read_matrix(req, "w1", L.max_d_ff, L.max_d_model);
    F = m1.rows;
    if (m1.cols != d) bad_field("w1", "[d_ff, d] with d = " + std::to_string(d) + " (PyTorch's linear1.weight)", json(std::to_string(m1.cols) + " columns"));
    const Matrix m2 = read_matrix(req, "w2", L.max_d_model, L.max_d_ff);
    if (m2.rows != d || m2.cols != F)
      bad_field("w2", "[d, d_ff] = [" + std::to_string(d) + ", " + std::to_string(F) + "] (PyTorch's linear2.weight)",
                json("[" + std::to_string(m2.rows) + ", " + std::to_string(m2.cols) + "]"));
    w1 = to_float(m1.data);
    w2 = to_float(m2.data);
    b1 = to_float(read_vector(req, "b1", F, 0.0));
    b2 = to_float(read_vector(req, "b2", d, 0.0));
    source = "given";
  }
  if (optional_field(req, "activation"))
    act = *parse_activation(read_choice(req, "activation", std::nullopt, {"relu", "gelu", "gelu_tanh"}));
  check_cost(4.0 * double(T) * double(d) * double(F) / 1e9, L, "x");
  Vec pre(static_cast<size_t>(T * F)), post(pre.size()), out(static_cast<size_t>(T * d));
  linear_forward(pre.data(), to_float(xm.data).data(), w1.data(), b1.data(), T, d, F);
  require_finite(pre.data(), T * F, {T, F}, "pre", optional_field(req, "w1") ? "w1" : "x", "make x, w1 or b1 smaller");
  activation_forward(act, post.data(), pre.data(), T * F);
  require_finite(post.data(), T * F, {T, F}, "act", optional_field(req, "w1") ? "w1" : "x", "make x, w1 or b1 smaller");
  linear_forward(out.data(), post.data(), w2.data(), b2.data(), T, F, d);
  require_finite(out.data(), T * d, {T, d}, "out", optional_field(req, "w2") ? "w2" : "x", "make x, w2 or b2 smaller");
  json top = json::array();
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int64_t> idx(static_cast<size_t>(F));
    std::iota(idx.begin(), idx.end(), 0);
    const float* a = post.data() + t * F;
    const int64_t k = std::min(top_k, F);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t i, int64_t j) { return a[i] > a[j]; });
    json units = json::array();
    for (int64_t i = 0; i < k; ++i)
      units.push_back({{"unit", idx[size_t(i)]}, {"pre", pre[size_t(t * F + idx[size_t(i)])]}, {"act", a[idx[size_t(i)]]}});
    int64_t active = 0;
    for (int64_t u = 0; u < F; ++u) active += a[u] > 0;
    top.push_back({{"position", t}, {"units", units}, {"active_fraction", double(active) / double(F)}});
  }
  return {{"pre", rows_json(pre.data(), T, F)},
          {"act", rows_json(post.data(), T, F)},
          {"out", rows_json(out.data(), T, d)},
          {"top_units", top},
          {"activation", name_of(act)},
          {"d_model", d},
          {"d_ff", F},
          {"weights", source},
          {"formula", "out = act(x W1^T + b1) W2^T + b2"}};
}

// ---- Block ---------------------------------------------------------------------------------------

namespace {

// A copy of `src` with `config`: parameters the two share (by name and shape) are copied; new norm
// weights start at 1 and biases at 0.
Model<float> remap(const Model<float>& src, const ModelConfig& config) {
  Model<float> m = std::move(Model<float>::create(config).value());
  for (const ParamSpec& s : m.layout().specs()) {
    const ParamSpec* from = src.layout().find(s.name);
    float* dst = m.params().data() + s.offset;
    if (from && from->shape == s.shape)
      std::copy(src.params().begin() + from->offset, src.params().begin() + from->offset + from->numel(), dst);
    else
      std::fill(dst, dst + s.numel(), s.name.ends_with(".weight") ? 1.0f : 0.0f);
  }
  return m;
}

void apply_edits(Model<float>& m, const json& edits) {
  if (!edits.is_array()) bad_field("param_edits", "an array of {name, index, value} or {name, values}", edits);
  for (size_t i = 0; i < edits.size(); ++i) {
    const std::string p = "param_edits[" + std::to_string(i) + "]";
    const json& e = edits[i];
    if (!e.is_object()) bad_field(p, "{name, index, value} or {name, values}", e);
    reject_unknown_keys(e, {"name", "index", "value", "values"}, p);
    const json& name = required_field(e, "name", p);
    const ParamSpec* s = name.is_string() ? m.layout().find(name.get<std::string>()) : nullptr;
    if (!s) bad_field(p + ".name", "the name of one of the model's parameters (e.g. layers.0.norm1.weight)", name);
    float* dst = m.params().data() + s->offset;
    if (optional_field(e, "values")) {
      const std::vector<double> v = read_vector(e, "values", s->numel(), std::nullopt, p);
      std::copy(v.begin(), v.end(), dst);
    } else {
      const int64_t index = read_integer(e, "index", std::nullopt, 0, s->numel() - 1, p);
      dst[index] = float(read_number(e, "value", std::nullopt, -1e6, 1e6, p));
    }
  }
}

json row_of(const Tensor<float>& t, int64_t row, int64_t width) { return nested(t.ptr() + row * width, {width}); }

json tracker_json(const Model<float>& m, int64_t p, int64_t T) {
  const ModelConfig& c = m.config();
  const int64_t d = c.d_model, F = c.d_ff, H = c.n_heads;
  const bool has_norm = c.norm != Norm::none;
  json steps = json::array();
  auto step = [&](int64_t block, const std::string& component, const std::string& name, const json& before,
                  const json& after, json extra = json::object()) {
    json s = {{"block", block}, {"component", component}, {"name", name}, {"before", before}, {"after", after}};
    for (auto it = extra.begin(); it != extra.end(); ++it) s[it.key()] = it.value();
    steps.push_back(std::move(s));
  };
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const BlockActs<float>& a = m.block_acts(i);
    const BlockOffsets& o = m.layout().block(i);
    const double alpha = o.alpha >= 0 ? double(m.params()[size_t(o.alpha)]) : c.residual_alpha;
    auto norm_extra = [&](const NormActs<float>& n, const Tensor<float>& in) {
      json e = {{"rstd", nested(n.rstd.ptr() + p, {})}};
      const float mu = c.norm == Norm::layernorm ? n.mean.data[size_t(p)] : 0.0f;
      if (c.norm == Norm::layernorm) e["mean"] = nested(n.mean.ptr() + p, {});
      std::vector<float> normalized(static_cast<size_t>(d));
      for (int64_t k = 0; k < d; ++k) normalized[size_t(k)] = (in.data[size_t(p * d + k)] - mu) * n.rstd.data[size_t(p)];
      e["normalized"] = nested(normalized.data(), {d});
      return e;
    };
    json pattern = json::array();
    for (int64_t h = 0; h < H; ++h) pattern.push_back(nested(a.pattern.ptr() + (h * T + p) * T, {T}));
    json hidden = {{"pre", row_of(a.mlp_pre, p, F)}, {"post", row_of(a.mlp_post, p, F)}};
    const json res1 = {{"increment", row_of(a.attn_out, p, d)}, {"alpha", alpha}, {"residual", c.residual}};
    const json res2 = {{"increment", row_of(a.mlp_out, p, d)}, {"alpha", alpha}, {"residual", c.residual}};
    if (c.placement == Placement::pre) {
      const Tensor<float>& attn_in = has_norm ? a.ln1.out : a.resid_pre;
      const Tensor<float>& ffn_in = has_norm ? a.ln2.out : a.resid_mid;
      if (has_norm) step(i, "layernorm", "ln1", row_of(a.resid_pre, p, d), row_of(a.ln1.out, p, d), norm_extra(a.ln1, a.resid_pre));
      step(i, "attention", "attention", row_of(attn_in, p, d), row_of(a.attn_out, p, d), {{"pattern", pattern}});
      step(i, "residual", "residual 1", row_of(a.resid_pre, p, d), row_of(a.resid_mid, p, d), res1);
      if (has_norm) step(i, "layernorm", "ln2", row_of(a.resid_mid, p, d), row_of(a.ln2.out, p, d), norm_extra(a.ln2, a.resid_mid));
      step(i, "ffn", "ffn", row_of(ffn_in, p, d), row_of(a.mlp_out, p, d), {{"hidden", hidden}});
      step(i, "residual", "residual 2", row_of(a.resid_mid, p, d), row_of(a.resid_post, p, d), res2);
    } else {
      step(i, "attention", "attention", row_of(a.resid_pre, p, d), row_of(a.attn_out, p, d), {{"pattern", pattern}});
      step(i, "residual", "residual 1", row_of(a.resid_pre, p, d), row_of(a.sum1, p, d), res1);
      if (has_norm) step(i, "layernorm", "ln1", row_of(a.sum1, p, d), row_of(a.resid_mid, p, d), norm_extra(a.ln1, a.sum1));
      step(i, "ffn", "ffn", row_of(a.resid_mid, p, d), row_of(a.mlp_out, p, d), {{"hidden", hidden}});
      step(i, "residual", "residual 2", row_of(a.resid_mid, p, d), row_of(a.sum2, p, d), res2);
      if (has_norm) step(i, "layernorm", "ln2", row_of(a.sum2, p, d), row_of(a.resid_post, p, d), norm_extra(a.ln2, a.sum2));
    }
  }
  return steps;
}

}  // namespace

json compute_block(const json& req, const ModelRegistry& models, const Limits& L) {
  reject_unknown_keys(req, {"model", "tokens", "text", "x", "overrides", "param_edits", "track", "trace", "top_k"});
  std::shared_ptr<const LoadedModel> lm = need_model(req, models);
  ModelConfig config = lm->model.config();
  if (const json* ov = optional_field(req, "overrides")) {
    if (!ov->is_object()) bad_field("overrides", "an object of config keys", *ov);
    reject_unknown_keys(*ov, {"alpha", "residual_alpha", "residual", "placement", "norm", "activation", "causal", "eps"},
                        "overrides");
    config.residual_alpha =
        read_number(*ov, "residual_alpha", read_number(*ov, "alpha", config.residual_alpha, -100, 100, "overrides"), -100,
                    100, "overrides");
    config.residual = read_bool(*ov, "residual", config.residual, "overrides");
    config.placement = *parse_placement(read_choice(*ov, "placement", std::string(name_of(config.placement)), {"pre", "post"}, "overrides"));
    config.norm = *parse_norm(read_choice(*ov, "norm", std::string(name_of(config.norm)), {"layernorm", "rmsnorm", "none"}, "overrides"));
    config.activation = *parse_activation(
        read_choice(*ov, "activation", std::string(name_of(config.activation)), {"relu", "gelu", "gelu_tanh"}, "overrides"));
    config.causal = read_bool(*ov, "causal", config.causal, "overrides");
    config.eps = read_number(*ov, "eps", config.eps, 1e-12, 1, "overrides");
    if (config.norm == Norm::none) config.final_norm = false;
    if (!config.residual) config.alpha_learnable = false;
    if (Status st = validate(config); !st) throw ApiError(400, "bad_config", st.message(), "overrides");
  }
  Model<float> m = remap(lm->model, config);
  if (const json* edits = optional_field(req, "param_edits")) apply_edits(m, *edits);

  // The input: tokens or text for a language model, x for a block stack.
  std::vector<int32_t> tokens;
  std::optional<std::string> text;
  if (config.is_language_model()) {
    if (optional_field(req, "x")) throw ApiError(400, "bad_request", "x: this model is a language model: expected tokens or text", "x");
    const int64_t max_t = std::min<int64_t>(L.max_tokens, config.max_seq_len.value_or(L.max_tokens));
    if (const json* text_field = optional_field(req, "text")) {
      if (!lm->info.alphabet) throw ApiError(400, "bad_request", "text: this model has no alphabet (not a chars model): expected tokens", "text");
      if (!text_field->is_string() || text_field->get<std::string>().empty()) bad_field("text", "a non-empty string", *text_field);
      // Counted and named in characters (code points), as they were typed: "text[1]" of "héllo" is the é, and the
      // message quotes it whole ("got \"é\""), not one of its UTF-8 bytes. The alphabet's characters are single bytes.
      const std::string s = text_field->get<std::string>();
      const int64_t n_chars = int64_t(utf8_length(s));
      if (n_chars > max_t)
        throw ApiError(413, "too_large", "text: expected at most " + std::to_string(max_t) + " characters, got " + std::to_string(n_chars), "text");
      for (size_t i = 0, at = 0; i < s.size(); ++at) {
        const size_t n = utf8_char_bytes(s, i);
        const size_t pos = n == 1 ? lm->info.alphabet->find(s[i]) : std::string::npos;
        if (pos == std::string::npos || int64_t(pos) >= *config.vocab_size)
          bad_field("text[" + std::to_string(at) + "]", "a character of the model's alphabet", json(s.substr(i, n)));
        tokens.push_back(int32_t(pos));
        i += n;
      }
      text = s;
    } else {
      const json& t = required_field(req, "tokens");
      if (!t.is_array() || t.empty()) bad_field("tokens", "a non-empty array of token ids", t);
      if (int64_t(t.size()) > max_t)
        throw ApiError(413, "too_large", "tokens: expected at most " + std::to_string(max_t) + " tokens, got " + std::to_string(t.size()), "tokens");
      for (size_t i = 0; i < t.size(); ++i) {
        if (!t[i].is_number_integer() || t[i].get<int64_t>() < 0 || t[i].get<int64_t>() >= *config.vocab_size)
          bad_field("tokens[" + std::to_string(i) + "]", "a token id in [0, " + std::to_string(*config.vocab_size - 1) + "]", t[i]);
        tokens.push_back(int32_t(t[i].get<int64_t>()));
      }
    }
  }
  Matrix xm;
  if (!config.is_language_model()) {
    xm = read_matrix(req, "x", L.max_tokens, config.d_model);
    if (xm.cols != config.d_model)
      bad_field("x", "rows of width d_model = " + std::to_string(config.d_model), json(std::to_string(xm.cols) + " columns"));
  }
  const int64_t T = config.is_language_model() ? int64_t(tokens.size()) : xm.rows;
  check_cost(estimate_gflop(config, T, false), L, config.is_language_model() ? "tokens" : "x");
  const int64_t track = read_integer(req, "track", T - 1, 0, T - 1);
  // trace: true (everything, the default), false, or a list of name prefixes ("blocks.0.ln1.", "hook_embed").
  std::vector<std::string> trace_prefixes;
  bool with_trace = true;
  if (const json* t = optional_field(req, "trace")) {
    if (t->is_array()) {
      for (size_t i = 0; i < t->size(); ++i) {
        if (!(*t)[i].is_string()) bad_field("trace[" + std::to_string(i) + "]", "an activation name or prefix", (*t)[i]);
        trace_prefixes.push_back((*t)[i].get<std::string>());
      }
    } else {
      with_trace = read_bool(req, "trace", true);
    }
  }
  const int64_t top_k = read_integer(req, "top_k", 5, 1, 50);

  Status st = config.is_language_model() ? m.forward_lm(tokens.data(), nullptr, 1, T)
                                         : m.forward(to_float(xm.data).data(), 1, T);
  if (!st) throw ApiError(400, "bad_request", st.message(), config.is_language_model() ? "tokens" : "x");
  {
    const std::string field = optional_field(req, "param_edits") ? "param_edits" : config.is_language_model() ? "tokens" : "x";
    const std::string advice = "the forward pass overflows float32: make x or the edited parameters smaller";
    require_finite(m.output().ptr(), T * config.d_model, {T, config.d_model}, "output", field, advice);
    if (config.is_language_model())
      require_finite(m.logits().ptr(), T * *config.vocab_size, {T, *config.vocab_size}, "logits", field, advice);
    for (const NamedTensor<float>& t : m.trace(false))
      if (!t.name.ends_with("hook_scores"))  // masked scores are -inf by design (null in the answer)
        require_finite(t.tensor.ptr(), t.tensor.numel(), t.tensor.shape, t.name, field, advice);
  }

  json out = {{"model", lm->info.id}, {"config", io::config_to_json(config)}, {"track", track}};
  if (config.is_language_model()) {
    out["tokens"] = tokens;
    if (text) out["text"] = *text;
  }
  if (with_trace) {
    json trace = json::object();
    for (const NamedTensor<float>& t : m.trace(false)) {
      bool wanted = trace_prefixes.empty();
      for (const std::string& p : trace_prefixes) wanted = wanted || t.name.rfind(p, 0) == 0;
      if (wanted) trace[t.name] = nested(t.tensor.ptr(), t.tensor.shape);
    }
    out["trace"] = std::move(trace);
  }
  out["tracker"] = tracker_json(m, track, T);
  out["output"] = nested(m.output().ptr(), {T, config.d_model});
  if (config.is_language_model()) {
    const int64_t V = *config.vocab_size;
    out["logits"] = nested(m.logits().ptr(), {T, V});
    json predictions = json::array();
    for (int64_t t = 0; t < T; ++t) {
      const float* row = m.logits().ptr() + t * V;
      std::vector<double> probs(static_cast<size_t>(V));
      const float mx = *std::max_element(row, row + V);
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += probs[size_t(v)] = std::exp(double(row[v] - mx));
      std::vector<int64_t> idx(static_cast<size_t>(V));
      std::iota(idx.begin(), idx.end(), 0);
      const int64_t k = std::min(top_k, V);
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) { return probs[size_t(a)] > probs[size_t(b)]; });
      json top = json::array();
      for (int64_t i = 0; i < k; ++i) {
        json e = {{"token", idx[size_t(i)]}, {"prob", probs[size_t(idx[size_t(i)])] / sum}};
        if (lm->info.alphabet && size_t(idx[size_t(i)]) < lm->info.alphabet->size())
          e["text"] = std::string(1, (*lm->info.alphabet)[size_t(idx[size_t(i)])]);
        top.push_back(e);
      }
      predictions.push_back({{"position", t}, {"top", top}});
    }
    out["predictions"] = predictions;
  }
  return out;
}

// ---- Gradient flow -------------------------------------------------------------------------------

namespace {

// Answers of /api/gradient-flow, a pure function of the stack, the batch shape and the seed: a class opening
// the page asks the same few questions (its default state first) many times. The last kAnswers distinct
// answers are kept, keyed by the request as read (config with its defaults, batch, seq_len, seed).
class GradFlowAnswers {
 public:
  static constexpr size_t kAnswers = 256;

  std::optional<json> find(const std::string& key) {
    const std::lock_guard<std::mutex> lock(mutex_);
    auto it = index_.find(key);
    if (it == index_.end()) return std::nullopt;
    order_.splice(order_.end(), order_, it->second);  // most recently used last
    return it->second->second;
  }

  void keep(const std::string& key, const json& answer) {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (index_.count(key)) return;
    if (order_.size() >= kAnswers) {
      index_.erase(order_.front().first);
      order_.pop_front();
    }
    order_.emplace_back(key, answer);
    index_[key] = std::prev(order_.end());
  }

 private:
  std::mutex mutex_;
  std::list<std::pair<std::string, json>> order_;
  std::unordered_map<std::string, std::list<std::pair<std::string, json>>::iterator> index_;
};

GradFlowAnswers& gradflow_answers() {
  static GradFlowAnswers answers;
  return answers;
}

}  // namespace

json compute_gradient_flow(const json& req, const Limits& L) {
  reject_unknown_keys(req, {"d_model", "n_heads", "d_ff", "n_layers", "norm", "placement", "activation", "residual",
                            "residual_alpha", "alpha", "eps", "final_norm", "causal", "dropout", "batch", "seq_len", "seed"});
  ModelConfig c = read_model_config(req, L);
  const int64_t batch = read_integer(req, "batch", 4, 1, L.max_batch);
  const int64_t seq = read_integer(req, "seq_len", 20, 1, L.max_tokens);
  const int64_t seed = read_integer(req, "seed", 0, 0, int64_t(1) << 53);
  c.vocab_size = 10;
  check_cost(estimate_gflop(c, batch * seq, true), L, "n_layers");
  const std::string key = io::config_key(c) + "|" + std::to_string(batch) + "|" + std::to_string(seq) +
                          "|" + std::to_string(seed);
  if (std::optional<json> kept = gradflow_answers().find(key)) return *kept;
  Result<lab::GradFlowResult> r = lab::measure_gradient_flow(c, batch, seq, uint64_t(seed));
  if (!r) throw ApiError(400, "bad_config", r.status().message(), "");
  auto first_non_finite = [](const lab::GradFlowResult& g) -> std::string {
    if (!std::isfinite(g.loss)) return "loss";
    for (const lab::GradFlowLayer& l : g.layers)
      for (auto [name, v] : {std::pair{"grad_norm_params", l.grad_norm_params}, std::pair{"grad_norm_resid", l.grad_norm_resid},
                             std::pair{"act_mean", l.act_mean}, std::pair{"act_std", l.act_std}})
        if (!std::isfinite(v)) return "layers[" + std::to_string(l.layer) + "]." + name;
    return "";
  };
  if (!first_non_finite(r.value()).empty()) {
    // float32 overflowed: the same measurement in float64 (about twice the time) may still be finite.
    r = lab::measure_gradient_flow(c, batch, seq, uint64_t(seed), /*exact=*/true);
    if (!r) throw ApiError(400, "bad_config", r.status().message(), "");
    if (const std::string bad = first_non_finite(r.value()); !bad.empty())
      throw ApiError(422, "overflow",
                     bad + ": expected a result within float64, got a non-finite value (the activations or gradients "
                           "overflow): make residual_alpha or n_layers smaller",
                     optional_field(req, "residual_alpha") || optional_field(req, "alpha") ? "residual_alpha" : "n_layers");
  }
  json answer = lab::to_json(r.value());
  gradflow_answers().keep(key, answer);
  return answer;
}

lab::TrainRunSpec read_run_request(const json& j, const Limits& L) {
  reject_unknown_keys(j, {"task", "steps", "batch", "seq_len", "lr", "warmup", "weight_decay", "clip", "optimizer",
                          "seed", "label", "grad_norm_every", "precision", "config"});
  lab::TrainRunSpec spec;
  spec.options.task = *lab::parse_task(read_choice(j, "task", "copy", {"copy", "reverse", "sort", "chars"}));
  spec.options.steps = read_integer(j, "steps", 200, 1, L.max_steps);
  spec.options.batch = read_integer(j, "batch", 32, 1, L.max_batch);
  spec.options.seq_len = read_integer(j, "seq_len", 20, 1, L.max_tokens);
  spec.options.optimizer.lr = read_number(j, "lr", 1e-3, 1e-8, 10);
  spec.options.optimizer.warmup_steps = read_integer(j, "warmup", 0, 0, L.max_steps);
  spec.options.optimizer.weight_decay = read_number(j, "weight_decay", 0, 0, 10);
  spec.options.optimizer.clip_norm = read_number(j, "clip", 0, 0, 1e6);
  spec.options.optimizer.kind = read_choice(j, "optimizer", "adamw", {"adamw", "adam"}) == "adam"
                                    ? OptimizerConfig::Kind::adam : OptimizerConfig::Kind::adamw;
  spec.options.seed = uint64_t(read_integer(j, "seed", 0, 0, int64_t(1) << 53));
  spec.options.grad_norm_every = read_integer(j, "grad_norm_every", 10, 0, L.max_steps);
  spec.options.precision = *parse_precision(read_choice(j, "precision", "f32", {"f32", "bf16"}));
  if (const json* label = optional_field(j, "label")) {
    if (!label->is_string() || label->get<std::string>().size() > 200) bad_field("label", "a string of at most 200 characters", *label);
    spec.label = label->get<std::string>();
  }
  json config = json::object();
  if (const json* c = optional_field(j, "config")) {
    if (!c->is_object()) bad_field("config", "an object of model config keys", *c);
    reject_unknown_keys(*c, {"d_model", "n_heads", "d_ff", "n_layers", "norm", "placement", "activation", "residual",
                             "residual_alpha", "alpha", "eps", "final_norm", "causal", "dropout"}, "config");
    config = *c;
  }
  ModelConfig mc = read_model_config(config, L, "config");
  if (spec.options.task == lab::TaskKind::chars && !config.contains("causal")) mc.causal = true;
  Result<ModelConfig> resolved = lab::training_config(mc, spec.options);
  if (!resolved) throw ApiError(400, "bad_config", resolved.status().message(), "config");
  spec.config = resolved.value();
  const double gflop =
      estimate_gflop(spec.config, spec.options.batch * spec.options.seq_len, true) * double(spec.options.steps);
  if (gflop > L.max_job_gflop) {
    char msg[200];
    std::snprintf(msg, sizeof msg, "the run would take about %.0f GFLOP (%.0f minutes here): expected at most %.0f",
                  gflop, gflop / 20.0 / 60.0, L.max_job_gflop);
    throw ApiError(413, "too_costly", std::string("steps: ") + msg, "steps");
  }
  return spec;
}

}  // namespace blocklab::server
