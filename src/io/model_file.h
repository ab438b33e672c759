// A model on disk: one safetensors file with PyTorch tensor names and the config as JSON in
// __metadata__["blocklab.config"] (docs/model-format.md).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>

#include "engine/config.h"
#include "engine/model.h"
#include "engine/status.h"
#include "io/safetensors.h"

namespace blocklab::io {

inline constexpr const char* kConfigMetadataKey = "blocklab.config";
// Checkpoints (io/checkpoint.h) add the training state under this key and the optimizer's tensors
// under this prefix; the model loader skips those.
inline constexpr const char* kTrainMetadataKey = "blocklab.train";
inline constexpr const char* kOptimizerPrefix = "optimizer.";

// Strict: unknown keys and values of the wrong type or range are errors naming the key.
// Missing keys keep the values already in `base` (the contract's defaults by default).
Result<ModelConfig> config_from_json(const nlohmann::json& j, const ModelConfig& base = {});
Result<ModelConfig> config_from_json_text(const std::string& text, const std::string& where);
Result<ModelConfig> read_config_file(const std::string& path);
// A (small) text file's contents; a path that is not a regular file is an error naming it.
Result<std::string> read_text_file(const std::string& path);
// A --config for a model file saved without one (by PyTorch): as read_config_file, and it must give the keys
// whose BlockLab default differs from nn.TransformerEncoderLayer's (activation, placement): no guessing.
Result<ModelConfig> read_config_for_torch_file(const std::string& path);
nlohmann::json config_to_json(const ModelConfig& config);
// The config as one compact string, equal exactly when the configs are: the key of caches of per-config work
// (the gradient-flow page's kept models and answers).
std::string config_key(const ModelConfig& config);

// The config in a file's __metadata__["blocklab.config"], parsed and validated (validate(): every size
// within the engine's limits), without building the model: a caller with stricter limits (the server)
// checks it before model_from_safetensors allocates anything.
Result<ModelConfig> config_of_safetensors(const SafetensorsFile& file, const std::string& where);
// The file's tensors by name (the first of a name, as SafetensorsFile::find), for lookups in O(1).
std::unordered_map<std::string_view, const StoredTensor*> tensors_by_name(const SafetensorsFile& file);

// Builds a model from a file's tensors: every tensor of the config's layout must be present with
// its exact shape, and nothing else. `config_override` (nullable) replaces the file's config.
template <typename T>
Result<Model<T>> model_from_safetensors(const SafetensorsFile& file, const std::string& where,
                                        const ModelConfig* config_override = nullptr);
// A model path: a model file, or a folder holding a GPT-2 checkpoint (io/gpt2.h; no config_override then).
template <typename T>
Result<Model<T>> load_model(const std::string& path, const ModelConfig* config_override = nullptr);

// The model's parameters (F32, or F64 when asked) and its config.
template <typename T>
SafetensorsFile model_to_safetensors(const Model<T>& model, DType dtype = DType::F32);
template <typename T>
Status save_model(const std::string& path, const Model<T>& model, DType dtype = DType::F32);

}  // namespace blocklab::io
