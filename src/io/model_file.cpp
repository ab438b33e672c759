#include "io/model_file.h"

#include <fstream>
#include <limits>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "io/gpt2.h"
#include "io/json_limits.h"

namespace blocklab::io {

using json = nlohmann::json;

namespace {

Status key_error(const std::string& key, const std::string& expected, const json& got) {
  return Status::error("config key '" + key + "': expected " + expected + ", got " + got.dump());
}

}  // namespace

namespace {
Result<ModelConfig> config_from_json_checked(const json& j, const ModelConfig& base);
}  // namespace

Result<ModelConfig> config_from_json(const json& j, const ModelConfig& base) {
  try {
    return config_from_json_checked(j, base);
  } catch (const json::exception& e) {  // every value's type is checked before it is read: defensive only
    return Status::error("config: " + json_error_text(e));
  }
}

namespace {

Result<ModelConfig> config_from_json_checked(const json& j, const ModelConfig& base) {
  if (!j.is_object()) return Status::error("config: expected a JSON object, got " + std::string(j.type_name()));
  ModelConfig c = base;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    // An integer that fits int64 (a JSON integer past 2^63 would wrap).
    auto is_int64 = [&] {
      return v.is_number_integer() &&
             !(v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()));
    };
    auto integer = [&](int64_t* out) -> Status {
      if (!is_int64()) return key_error(key, "an integer", v);
      *out = v.get<int64_t>();
      return Status::ok();
    };
    auto number = [&](double* out) -> Status {
      if (!v.is_number()) return key_error(key, "a number", v);
      *out = v.get<double>();
      return Status::ok();
    };
    auto boolean = [&](bool* out) -> Status {
      if (!v.is_boolean()) return key_error(key, "true or false", v);
      *out = v.get<bool>();
      return Status::ok();
    };
    auto choice = [&](auto parse, auto* out, const char* options) -> Status {
      if (!v.is_string() || !parse(v.get<std::string>())) return key_error(key, std::string("one of ") + options, v);
      *out = *parse(v.get<std::string>());
      return Status::ok();
    };
    Status st;
    if (key == "d_model") st = integer(&c.d_model);
    else if (key == "n_heads") st = integer(&c.n_heads);
    else if (key == "d_ff") st = integer(&c.d_ff);
    else if (key == "n_layers") st = integer(&c.n_layers);
    else if (key == "norm") st = choice(parse_norm, &c.norm, "\"layernorm\" \"rmsnorm\" \"none\"");
    else if (key == "placement") st = choice(parse_placement, &c.placement, "\"pre\" \"post\"");
    else if (key == "activation") st = choice(parse_activation, &c.activation, "\"relu\" \"gelu\" \"gelu_tanh\"");
    else if (key == "residual") st = boolean(&c.residual);
    else if (key == "residual_alpha") st = number(&c.residual_alpha);
    else if (key == "alpha_learnable") st = boolean(&c.alpha_learnable);
    else if (key == "eps") st = number(&c.eps);
    else if (key == "final_norm") st = boolean(&c.final_norm);
    else if (key == "causal") st = boolean(&c.causal);
    else if (key == "dropout") st = number(&c.dropout);
    else if (key == "tied_head") st = boolean(&c.tied_head);
    else if (key == "max_seq_len") {
      if (v.is_null()) c.max_seq_len.reset();
      else if (is_int64()) c.max_seq_len = v.get<int64_t>();
      else st = key_error(key, "null or an integer", v);
    } else if (key == "vocab_size") {
      if (v.is_null()) c.vocab_size.reset();
      else if (is_int64()) c.vocab_size = v.get<int64_t>();
      else st = key_error(key, "null or an integer", v);
    } else {
      return Status::error("config: unknown key '" + key +
                           "': expected one of d_model n_heads d_ff n_layers norm placement activation residual "
                           "residual_alpha alpha_learnable eps final_norm causal dropout vocab_size max_seq_len tied_head");
    }
    if (!st.is_ok()) return st;
  }
  BLOCKLAB_RETURN_IF_ERROR(validate(c));
  return c;
}

}  // namespace

Result<ModelConfig> config_from_json_text(const std::string& text, const std::string& where) {
  Result<json> j = parse_json_limited(text, kMaxJsonDepth);
  if (!j) return Status::error(where + ": config is not valid JSON: " + j.status().message());
  Result<ModelConfig> c = config_from_json(j.value());
  if (!c) return c.status().with_context(where);
  return c;
}

Result<std::string> read_text_file(const std::string& path) {
  BLOCKLAB_RETURN_IF_ERROR(expect_regular_file(path));
  std::ifstream in(path);
  if (!in) return Status::error(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<ModelConfig> read_config_file(const std::string& path) {
  Result<std::string> text = read_text_file(path);
  if (!text) return text.status();
  return config_from_json_text(text.value(), path);
}

Result<ModelConfig> read_config_for_torch_file(const std::string& path) {
  Result<std::string> text = read_text_file(path);
  if (!text) return text.status();
  Result<ModelConfig> c = config_from_json_text(text.value(), path);
  if (!c) return c;
  const json j = parse_json_limited(text.value(), kMaxJsonDepth).value();  // parsed above
  // The keys whose BlockLab default is not nn.TransformerEncoderLayer's: guessing them runs another model.
  const std::pair<const char*, const char*> differ[] = {
      {"activation", "\"relu\" (PyTorch's default), \"gelu\" or \"gelu_tanh\"; BlockLab's default gelu is not PyTorch's relu"},
      {"placement", "\"post\" (PyTorch's default, norm_first=False) or \"pre\"; BlockLab's default pre is not PyTorch's post"},
  };
  for (const auto& [key, expected] : differ)
    if (!j.contains(key))
      return Status::error(path + ": config key '" + key + "': expected it given, " + expected + "; got no '" + key + "'");
  return c;
}

json config_to_json(const ModelConfig& c) {
  return json{{"d_model", c.d_model},
              {"n_heads", c.n_heads},
              {"d_ff", c.d_ff},
              {"n_layers", c.n_layers},
              {"norm", name_of(c.norm)},
              {"placement", name_of(c.placement)},
              {"activation", name_of(c.activation)},
              {"residual", c.residual},
              {"residual_alpha", c.residual_alpha},
              {"alpha_learnable", c.alpha_learnable},
              {"eps", c.eps},
              {"final_norm", c.final_norm},
              {"causal", c.causal},
              {"dropout", c.dropout},
              {"vocab_size", c.vocab_size ? json(*c.vocab_size) : json(nullptr)},
              {"max_seq_len", c.max_seq_len ? json(*c.max_seq_len) : json(nullptr)},
              {"tied_head", c.tied_head}};
}

std::string config_key(const ModelConfig& c) { return config_to_json(c).dump(); }

Result<ModelConfig> config_of_safetensors(const SafetensorsFile& file, const std::string& where) {
  auto it = file.metadata.find(kConfigMetadataKey);
  if (it == file.metadata.end())
    return Status::error(where + ": __metadata__ has no \"" + std::string(kConfigMetadataKey) +
                         "\": expected the model's config as a JSON string (or pass --config)");
  return config_from_json_text(it->second, where);
}

std::unordered_map<std::string_view, const StoredTensor*> tensors_by_name(const SafetensorsFile& file) {
  std::unordered_map<std::string_view, const StoredTensor*> by_name;
  by_name.reserve(file.tensors.size());
  for (const StoredTensor& t : file.tensors) by_name.emplace(t.name, &t);  // the first of a name, as find()
  return by_name;
}

template <typename T>
Result<Model<T>> model_from_safetensors(const SafetensorsFile& file, const std::string& where,
                                        const ModelConfig* config_override) {
  ModelConfig config;
  if (config_override) {
    config = *config_override;
  } else {
    Result<ModelConfig> parsed = config_of_safetensors(file, where);
    if (!parsed) return parsed.status();
    config = parsed.value();
  }
  // validate() bounds every size and the parameter count before Model::create allocates anything.
  Result<Model<T>> model = Model<T>::create(config);
  if (!model) return model.status().with_context(where);
  const ParamLayout& layout = model->layout();
  // A training checkpoint is also a model file: its optimizer state ("optimizer.*") is not the model's.
  const bool checkpoint = file.metadata.count(kTrainMetadataKey) > 0;
  for (const StoredTensor& t : file.tensors)
    if (!layout.find(t.name) && !(checkpoint && t.name.starts_with(kOptimizerPrefix)))
      return Status::error(where + ": unexpected tensor '" + t.name + "': not a parameter of this config");
  const std::unordered_map<std::string_view, const StoredTensor*> by_name = tensors_by_name(file);
  for (const ParamSpec& spec : layout.specs()) {
    auto found = by_name.find(spec.name);
    const StoredTensor* t = found == by_name.end() ? nullptr : found->second;
    if (!t) return Status::error(where + ": missing tensor '" + spec.name + "': expected shape " + shape_str(spec.shape));
    if (t->shape != spec.shape)
      return Status::error(where + ": tensor '" + spec.name + "': expected shape " + shape_str(spec.shape) + ", got " +
                           shape_str(t->shape));
    Result<Tensor<T>> values = to_float_tensor<T>(*t, where);
    if (!values) return values.status();
    std::copy(values->data.begin(), values->data.end(), model->params().begin() + spec.offset);
  }
  return model;
}

template <typename T>
Result<Model<T>> load_model(const std::string& path, const ModelConfig* config_override) {
  if (is_model_folder(path)) {
    if (config_override)
      return Status::error(path + ": a GPT-2 folder's config is its config.json: expected no --config, got one");
    return load_gpt2<T>(path);
  }
  Result<SafetensorsFile> file = read_safetensors(path);
  if (!file) return file.status();
  return model_from_safetensors<T>(file.value(), path, config_override);
}

template <typename T>
SafetensorsFile model_to_safetensors(const Model<T>& model, DType dtype) {
  SafetensorsFile file;
  file.metadata[kConfigMetadataKey] = config_to_json(model.config()).dump();
  for (const ParamSpec& spec : model.layout().specs())
    file.add(from_float_tensor(spec.name, param_tensor(spec, model.params()), dtype));
  return file;
}

template <typename T>
Status save_model(const std::string& path, const Model<T>& model, DType dtype) {
  return write_safetensors(path, model_to_safetensors(model, dtype));
}

template Result<Model<float>> model_from_safetensors<float>(const SafetensorsFile&, const std::string&, const ModelConfig*);
template Result<Model<double>> model_from_safetensors<double>(const SafetensorsFile&, const std::string&, const ModelConfig*);
template Result<Model<float>> load_model<float>(const std::string&, const ModelConfig*);
template Result<Model<double>> load_model<double>(const std::string&, const ModelConfig*);
template SafetensorsFile model_to_safetensors<float>(const Model<float>&, DType);
template SafetensorsFile model_to_safetensors<double>(const Model<double>&, DType);
template Status save_model<float>(const std::string&, const Model<float>&, DType);
template Status save_model<double>(const std::string&, const Model<double>&, DType);

}  // namespace blocklab::io
