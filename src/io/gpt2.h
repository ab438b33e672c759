// GPT-2 checkpoints as Hugging Face publishes them (the contract's section 8; docs/gpt2.md): a folder with
// config.json and model.safetensors (GPT2Model / GPT2LMHeadModel tensor names, with or without the
// "transformer." prefix, Conv1D weights [in, out]). Loaded onto the engine's model: pre-LN, causal, learned
// positions, a final LayerNorm and the head tied to the token embedding. The file is mapped (mmap) and each
// tensor converted straight from the mapping into the model's parameters, a few MiB at a time, each piece's
// pages released once converted: the process never holds a second copy of the weights.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/model.h"
#include "engine/status.h"
#include "engine/tensor.h"

namespace blocklab::io {

inline constexpr const char* kGpt2ConfigFile = "config.json";
inline constexpr const char* kGpt2WeightsFile = "model.safetensors";
inline constexpr const char* kGpt2Prefix = "transformer.";

// Whether a model path names a folder (a GPT-2 checkpoint) rather than a model file.
bool is_model_folder(const std::string& path);

// config.json's keys on the engine's config: n_embd, n_head, n_layer, n_positions, vocab_size (required),
// n_inner (null or absent: 4 n_embd), layer_norm_epsilon (absent: 1e-5), activation_function (absent:
// "gelu_new"; "gelu_new" and "gelu_pytorch_tanh" are the tanh GELU, "gelu" the erf one, "relu"). A key that
// asks for what the engine does not compute (another model_type, unscaled or layer-scaled attention, cross
// attention, an untied head) is an error naming it, expected vs got; keys that do not change the forward
// (dropouts, token ids, generation settings) are ignored. `where` prefixes errors (the file's path).
Result<ModelConfig> gpt2_config_from_json(const nlohmann::json& j, const std::string& where);
Result<ModelConfig> read_gpt2_config(const std::string& dir);

// One tensor of a GPT-2 file (name without the prefix) and the engine's parameter that holds it.
struct Gpt2Tensor {
  std::string name;   // "h.0.attn.c_attn.weight"
  Shape shape;        // as stored: Conv1D weights [in, out]
  std::string param;  // "layers.0.self_attn.in_proj_weight"
  bool transpose = false;  // a Conv1D weight: the engine's Linear layout is [out, in]
};
// Every tensor a GPT-2 file of `config` must hold, in the engine's parameter order.
std::vector<Gpt2Tensor> gpt2_tensors(const ModelConfig& config);

// Loads the folder: its config, then every tensor checked (name, shape, dtype F32, F64, F16 or BF16; the
// attention-mask buffers h.{i}.attn.bias and .masked_bias are ignored; an lm_head.weight must equal wte)
// before the model is allocated, then converted from the mapped file. Errors name the file and the key or
// tensor, expected vs got; nothing is half-loaded.
template <typename T>
Result<Model<T>> load_gpt2(const std::string& dir);

}  // namespace blocklab::io
