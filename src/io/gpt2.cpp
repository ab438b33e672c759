#include "io/gpt2.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <unordered_map>

#include "io/json_limits.h"
#include "io/model_file.h"
#include "io/safetensors.h"

namespace blocklab::io {

namespace fs = std::filesystem;
using json = nlohmann::json;

bool is_model_folder(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

namespace {

Status key_error(const std::string& where, const std::string& key, const std::string& expected, const std::string& got) {
  return Status::error(where + ": key '" + key + "': expected " + expected + ", got " + got);
}

// The engine's bound for a size (config_key_limits(), the one table of them).
int64_t engine_max(std::string_view engine_key) {
  for (const ConfigKeyLimit& l : config_key_limits())
    if (l.key == engine_key) return l.max;
  return 0;  // unreachable: every caller names a key of the table
}

bool is_int64(const json& v) {
  return v.is_number_integer() && !(v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX));
}

}  // namespace

Result<ModelConfig> gpt2_config_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) return Status::error(where + ": expected a JSON object (GPT-2's config), got " + std::string(j.type_name()));
  ModelConfig c;
  c.norm = Norm::layernorm;
  c.placement = Placement::pre;
  c.activation = Activation::gelu_tanh;
  c.residual = true;
  c.residual_alpha = 1.0;
  c.causal = true;
  c.final_norm = true;
  c.tied_head = true;
  c.eps = 1e-5;
  c.dropout = 0.0;  // GPT-2's dropouts are training settings; forward and backward never apply dropout

  // The sizes: an integer >= 1 within the engine's limit for the key it becomes.
  int64_t vocab = 0, positions = 0;
  struct Size {
    const char* key;
    const char* engine_key;
    int64_t* out;
    const char* what;
  };
  const Size sizes[] = {{"n_embd", "d_model", &c.d_model, "the width"},
                        {"n_head", "n_heads", &c.n_heads, "attention heads"},
                        {"n_layer", "n_layers", &c.n_layers, "blocks"},
                        {"n_positions", "max_seq_len", &positions, "positions of wpe"},
                        {"vocab_size", "vocab_size", &vocab, "tokens of wte"}};
  for (const Size& s : sizes) {
    auto it = j.find(s.key);
    const int64_t max = engine_max(s.engine_key);
    const std::string expected = std::string("an integer in 1..") + std::to_string(max) + " (" + s.what + ")";
    if (it == j.end()) return key_error(where, s.key, expected, "no such key");
    if (!is_int64(*it) || it->get<int64_t>() < 1 || it->get<int64_t>() > max) return key_error(where, s.key, expected, it->dump());
    *s.out = it->get<int64_t>();
  }
  c.vocab_size = vocab;
  c.max_seq_len = positions;
  if (c.d_model % c.n_heads != 0)
    return key_error(where, "n_head", "a divisor of n_embd " + std::to_string(c.d_model), std::to_string(c.n_heads));
  c.d_ff = 4 * c.d_model;
  if (auto it = j.find("n_inner"); it != j.end() && !it->is_null()) {
    const int64_t max = engine_max("d_ff");
    if (!is_int64(*it) || it->get<int64_t>() < 1 || it->get<int64_t>() > max)
      return key_error(where, "n_inner", "null (4 n_embd) or an integer in 1.." + std::to_string(max), it->dump());
    c.d_ff = it->get<int64_t>();
  }
  if (auto it = j.find("layer_norm_epsilon"); it != j.end()) {
    if (!it->is_number() || !(it->get<double>() > 0) || !std::isfinite(it->get<double>()))
      return key_error(where, "layer_norm_epsilon", "a finite number > 0", it->dump());
    c.eps = it->get<double>();
  }
  if (auto it = j.find("activation_function"); it != j.end()) {
    const std::string name = it->is_string() ? it->get<std::string>() : "";
    if (name == "gelu_new" || name == "gelu_pytorch_tanh") c.activation = Activation::gelu_tanh;
    else if (name == "gelu") c.activation = Activation::gelu;
    else if (name == "relu") c.activation = Activation::relu;
    else
      return key_error(where, "activation_function",
                       "one of \"gelu_new\" \"gelu_pytorch_tanh\" (tanh GELU), \"gelu\" (erf), \"relu\" (what the engine computes)",
                       it->dump());
  }
  if (auto it = j.find("model_type"); it != j.end() && !(it->is_string() && it->get<std::string>() == "gpt2"))
    return key_error(where, "model_type", "\"gpt2\"", it->dump());
  // Keys of GPT2Config that change the forward in ways the engine does not compute: only their GPT-2 values.
  const std::pair<const char*, bool> fixed[] = {
      {"scale_attn_weights", true},                // scores / sqrt(d_head)
      {"scale_attn_by_inverse_layer_idx", false},  // another 1 / (layer + 1)
      {"add_cross_attention", false},              // an encoder-decoder's cross attention
      {"tie_word_embeddings", true},               // the head is wte
  };
  for (const auto& [key, value] : fixed)
    if (auto it = j.find(key); it != j.end() && !(it->is_boolean() && it->get<bool>() == value))
      return key_error(where, key, std::string(value ? "true" : "false") + " (the only value the engine computes)", it->dump());
  Status st = validate(c);  // the parameter count
  if (!st) return st.with_context(where);
  return c;
}

Result<ModelConfig> read_gpt2_config(const std::string& dir) {
  const std::string path = (fs::path(dir) / kGpt2ConfigFile).string();
  std::error_code ec;
  if (!fs::exists(path, ec))
    return Status::error(dir + ": a folder without " + kGpt2ConfigFile + ": expected a model file, or a GPT-2 folder as Hugging "
                         "Face publishes it (config.json and model.safetensors; docs/gpt2.md)");
  Result<std::string> text = read_text_file(path);
  if (!text) return text.status();
  Result<json> j = parse_json_limited(text.value(), kMaxJsonDepth);
  if (!j) return Status::error(path + ": not valid JSON: " + j.status().message());
  return gpt2_config_from_json(j.value(), path);
}

std::vector<Gpt2Tensor> gpt2_tensors(const ModelConfig& c) {
  const int64_t d = c.d_model, f = c.d_ff;
  std::vector<Gpt2Tensor> out = {{"wte.weight", {*c.vocab_size, d}, "embed.weight", false},
                                 {"wpe.weight", {*c.max_seq_len, d}, "pos_embed.weight", false}};
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string h = "h." + std::to_string(i) + ".", l = "layers." + std::to_string(i) + ".";
    const std::vector<Gpt2Tensor> block = {
        {h + "attn.c_attn.weight", {d, 3 * d}, l + "self_attn.in_proj_weight", true},
        {h + "attn.c_attn.bias", {3 * d}, l + "self_attn.in_proj_bias", false},
        {h + "attn.c_proj.weight", {d, d}, l + "self_attn.out_proj.weight", true},
        {h + "attn.c_proj.bias", {d}, l + "self_attn.out_proj.bias", false},
        {h + "mlp.c_fc.weight", {d, f}, l + "linear1.weight", true},
        {h + "mlp.c_fc.bias", {f}, l + "linear1.bias", false},
        {h + "mlp.c_proj.weight", {f, d}, l + "linear2.weight", true},
        {h + "mlp.c_proj.bias", {d}, l + "linear2.bias", false},
        {h + "ln_1.weight", {d}, l + "norm1.weight", false},
        {h + "ln_1.bias", {d}, l + "norm1.bias", false},
        {h + "ln_2.weight", {d}, l + "norm2.weight", false},
        {h + "ln_2.bias", {d}, l + "norm2.bias", false},
    };
    out.insert(out.end(), block.begin(), block.end());
  }
  out.push_back({"ln_f.weight", {d}, "norm.weight", false});
  out.push_back({"ln_f.bias", {d}, "norm.bias", false});
  return out;
}

namespace {

// h.{i}.attn.bias and h.{i}.attn.masked_bias for a block i of the config: the causal mask's buffers.
bool is_mask_buffer(std::string_view name, int64_t n_layers) {
  if (!name.starts_with("h.")) return false;
  constexpr size_t start = 2;  // after "h."
  size_t pos = start;
  int64_t i = 0;
  while (pos < name.size() && name[pos] >= '0' && name[pos] <= '9' && pos - start < 6) i = i * 10 + (name[pos++] - '0');
  if (pos == start || i >= n_layers) return false;
  const std::string_view rest = name.substr(pos);
  return rest == ".attn.bias" || rest == ".attn.masked_bias";
}

// A tensor into `out`, in pieces of about 4 MiB of the file, each piece's pages released once converted: the
// process holds at most one piece of the file at a time. A Conv1D weight [R, C] (in, out) goes into the
// engine's [C, R], a tile of rows at a time.
constexpr size_t kPieceBytes = size_t(4) << 20;

template <typename T>
void convert(const MappedSafetensors& file, const TensorView& v, bool transpose, T* out) {
  const size_t es = dtype_size(v.dtype);
  if (!transpose) {
    const int64_t n = numel_of(v.shape), step = int64_t(kPieceBytes / es);
    for (int64_t i = 0; i < n; i += step) {
      const int64_t count = std::min(step, n - i);
      decode_floats(v.dtype, v.bytes.data() + size_t(i) * es, count, out + i);
      file.release(v.bytes.subspan(size_t(i) * es, size_t(count) * es));
    }
    return;
  }
  const int64_t R = v.shape[0], C = v.shape[1];
  const int64_t rows_per_tile = std::max<int64_t>(1, std::min<int64_t>(R, int64_t(kPieceBytes / es) / C));
  std::vector<T> tile(size_t(rows_per_tile * C));
  for (int64_t r0 = 0; r0 < R; r0 += rows_per_tile) {
    const int64_t rows = std::min(rows_per_tile, R - r0);
    const std::span<const uint8_t> piece = v.bytes.subspan(size_t(r0 * C) * es, size_t(rows * C) * es);
    decode_floats(v.dtype, piece.data(), rows * C, tile.data());
    file.release(piece);
    for (int64_t col = 0; col < C; ++col) {
      T* dst = out + col * R + r0;
      const T* src = tile.data() + col;
      for (int64_t r = 0; r < rows; ++r) dst[r] = src[r * C];
    }
  }
}

bool is_float(DType t) { return t == DType::F32 || t == DType::F64 || t == DType::F16 || t == DType::BF16; }

}  // namespace

template <typename T>
Result<Model<T>> load_gpt2(const std::string& dir) {
  Result<ModelConfig> config = read_gpt2_config(dir);
  if (!config) return config.status();
  const ModelConfig& c = config.value();
  const std::string path = (fs::path(dir) / kGpt2WeightsFile).string();
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    std::string found;
    if (fs::exists(fs::path(dir) / "model.safetensors.index.json", ec))
      found = " (it has model.safetensors.index.json: a checkpoint in shards, which BlockLab does not read)";
    else if (fs::exists(fs::path(dir) / "pytorch_model.bin", ec))
      found = " (it has pytorch_model.bin, a PyTorch pickle, which BlockLab does not read)";
    return Status::error(dir + ": no " + kGpt2WeightsFile + found +
                         ": expected the weights as one safetensors file, as huggingface.co/openai-community/gpt2 "
                         "publishes them (docs/gpt2.md)");
  }
  Result<MappedSafetensors> mapped = MappedSafetensors::open(path);
  if (!mapped) return mapped.status();
  const MappedSafetensors& file = mapped.value();
  const SafetensorsIndex& index = file.index();
  std::unordered_map<std::string_view, const TensorView*> by_name;
  for (const TensorView& t : index.tensors) by_name.emplace(t.name, &t);
  const std::string prefix = by_name.count(std::string(kGpt2Prefix) + "wte.weight") ? kGpt2Prefix : "";
  const std::vector<Gpt2Tensor> expected = gpt2_tensors(c);
  std::unordered_map<std::string_view, const Gpt2Tensor*> expected_by_name;
  for (const Gpt2Tensor& e : expected) expected_by_name.emplace(e.name, &e);
  const std::string naming = std::string(prefix.empty() ? "without" : "with") + " the '" + kGpt2Prefix + "' prefix";

  // Every tensor checked before anything of the model's size is allocated.
  for (const TensorView& t : index.tensors) {
    if (t.name == "lm_head.weight") continue;
    const std::string_view rest = std::string_view(t.name).substr(t.name.starts_with(prefix) ? prefix.size() : 0);
    if (t.name.starts_with(prefix) && (expected_by_name.count(rest) || is_mask_buffer(rest, c.n_layers))) continue;
    return Status::error(path + ": unexpected tensor '" + t.name + "': not a GPT-2 tensor of this config (n_layer " +
                         std::to_string(c.n_layers) + ", names " + naming + "; docs/gpt2.md)");
  }
  auto check_float = [&](const TensorView& t) -> Status {
    return is_float(t.dtype) ? Status::ok() : float_dtype_error(path, t.name, t.dtype);
  };
  std::vector<const TensorView*> views;
  views.reserve(expected.size());
  for (const Gpt2Tensor& e : expected) {
    auto it = by_name.find(prefix + e.name);
    if (it == by_name.end())
      return Status::error(path + ": missing tensor '" + prefix + e.name + "': expected shape " + shape_str(e.shape) +
                           (e.transpose ? " (Conv1D [in, out])" : "") + " (names " + naming + ")");
    const TensorView& t = *it->second;
    if (t.shape != e.shape)
      return Status::error(path + ": tensor '" + t.name + "': expected shape " + shape_str(e.shape) +
                           (e.transpose ? " (Conv1D [in, out])" : "") + ", got " + shape_str(t.shape));
    BLOCKLAB_RETURN_IF_ERROR(check_float(t));
    views.push_back(&t);
  }
  const TensorView* lm_head = index.find("lm_head.weight");
  if (lm_head) {
    const Shape want = {*c.vocab_size, c.d_model};
    if (lm_head->shape != want)
      return Status::error(path + ": tensor 'lm_head.weight': expected shape " + shape_str(want) + " (wte's: the head is tied), got " +
                           shape_str(lm_head->shape));
    BLOCKLAB_RETURN_IF_ERROR(check_float(*lm_head));
  }

  Result<Model<T>> created = Model<T>::create(c);
  if (!created) return created.status().with_context(path);
  Model<T>& model = created.value();
  for (size_t k = 0; k < expected.size(); ++k) {
    const TensorView& t = *views[k];
    T* out = model.params().data() + model.layout().find(expected[k].param)->offset;
    convert(file, t, expected[k].transpose, out);
    file.release(t);  // the pages the pieces shared with their neighbours
  }
  if (lm_head) {  // tied: the same values as wte, row by row
    const int64_t V = *c.vocab_size, d = c.d_model;
    const T* wte = model.params().data() + model.layout().embed_weight();
    std::vector<T> row(static_cast<size_t>(d));
    const size_t row_bytes = size_t(d) * dtype_size(lm_head->dtype);
    for (int64_t r = 0; r < V; ++r) {
      decode_floats(lm_head->dtype, lm_head->bytes.data() + size_t(r) * row_bytes, d, row.data());
      if ((r + 1) % 1024 == 0) file.release(lm_head->bytes.subspan(size_t(r - 1023) * row_bytes, 1024 * row_bytes));
      if (std::memcmp(row.data(), wte + r * d, size_t(d) * sizeof(T)) == 0) continue;
      int64_t col = 0;
      while (col < d && std::memcmp(&row[size_t(col)], wte + r * d + col, sizeof(T)) == 0) ++col;
      return Status::error(path + ": tensor 'lm_head.weight': expected the values of " + prefix +
                           "wte.weight (the head is tied to wte), got another value at [" + std::to_string(r) + ", " +
                           std::to_string(col) + "]: " + std::to_string(double(row[size_t(col)])) + " vs " +
                           std::to_string(double(wte[r * d + col])));
    }
    file.release(*lm_head);
  }
  return created;
}

template Result<Model<float>> load_gpt2<float>(const std::string&);
template Result<Model<double>> load_gpt2<double>(const std::string&);

}  // namespace blocklab::io
