// Model files: config JSON (strict keys and values), tensors by PyTorch name and shape, and the
// round trip save -> load.
#include "io/model_file.h"

#include <gtest/gtest.h>

namespace blocklab::io {
namespace {

using json = nlohmann::json;

std::string config_error(const json& j) {
  Result<ModelConfig> r = config_from_json(j);
  EXPECT_FALSE(r.is_ok()) << j.dump();
  return r.is_ok() ? "" : r.status().message();
}

TEST(ConfigJson, MissingKeysTakeTheContractsDefaults) {
  Result<ModelConfig> r = config_from_json(json::object());
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r.value(), ModelConfig{});
  EXPECT_EQ(r->d_model, 64);
  EXPECT_EQ(r->norm, Norm::layernorm);
  EXPECT_EQ(r->placement, Placement::pre);
  EXPECT_EQ(r->activation, Activation::gelu);
  EXPECT_EQ(r->eps, 1e-5);
  EXPECT_FALSE(r->vocab_size.has_value());
}

TEST(ConfigJson, RoundTrip) {
  ModelConfig c;
  c.d_model = 32;
  c.n_heads = 8;
  c.norm = Norm::rmsnorm;
  c.placement = Placement::post;
  c.activation = Activation::gelu_tanh;
  c.residual = false;
  c.residual_alpha = 0.5;
  c.final_norm = true;
  c.causal = true;
  c.vocab_size = 10;
  c.max_seq_len = 20;
  c.dropout = 0.1;
  Result<ModelConfig> back = config_from_json(config_to_json(c));
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_EQ(back.value(), c);
  c.residual = true;
  c.alpha_learnable = true;
  EXPECT_EQ(config_from_json(config_to_json(c)).value(), c);
}

TEST(ConfigJson, UnknownKey) {
  EXPECT_EQ(config_error({{"d_modle", 64}}).substr(0, 30), "config: unknown key 'd_modle':");
}

TEST(ConfigJson, BadValues) {
  EXPECT_EQ(config_error({{"norm", "batchnorm"}}),
            "config key 'norm': expected one of \"layernorm\" \"rmsnorm\" \"none\", got \"batchnorm\"");
  EXPECT_EQ(config_error({{"d_model", 64.5}}), "config key 'd_model': expected an integer, got 64.5");
  EXPECT_EQ(config_error({{"residual", "yes"}}), "config key 'residual': expected true or false, got \"yes\"");
  EXPECT_EQ(config_error({{"vocab_size", "ten"}}), "config key 'vocab_size': expected null or an integer, got \"ten\"");
  EXPECT_EQ(config_error({{"d_model", 64}, {"n_heads", 6}}),
            "config key 'n_heads': expected a divisor of d_model 64, got 6");
  EXPECT_EQ(config_error({{"norm", "none"}, {"final_norm", true}}),
            "config key 'final_norm': expected false when norm is \"none\", got true");
  EXPECT_EQ(config_error({{"eps", -1}}), "config key 'eps': expected a finite number > 0, got -1");
  EXPECT_EQ(config_error({{"n_layers", 0}}), "config key 'n_layers': expected an integer >= 1, got 0");
  EXPECT_EQ(config_error(json::array()), "config: expected a JSON object, got array");
  EXPECT_EQ(config_error({{"max_seq_len", 8}}),
            "config key 'max_seq_len': expected null when vocab_size is null (positions belong to the language model), got 8");
  EXPECT_EQ(config_error({{"residual", false}, {"alpha_learnable", true}}),
            "config key 'alpha_learnable': expected false when residual is false (there is no alpha without a residual), got true");
}

Model<float> small_model(const ModelConfig& c) {
  Model<float> m = std::move(Model<float>::create(c).value());
  init_parameters(m.layout(), 1, m.params().data());
  return m;
}

ModelConfig small_config() {
  ModelConfig c;
  c.d_model = 8;
  c.n_heads = 2;
  c.d_ff = 16;
  c.n_layers = 2;
  c.final_norm = true;
  return c;
}

std::string load_error(const SafetensorsFile& f) {
  Result<Model<float>> r = model_from_safetensors<float>(f, "m.safetensors");
  EXPECT_FALSE(r.is_ok());
  return r.is_ok() ? "" : r.status().message();
}

TEST(ModelFile, SaveAndLoadRoundTrip) {
  const Model<float> m = small_model(small_config());
  const SafetensorsFile f = model_to_safetensors(m);
  EXPECT_EQ(f.tensors.front().name, "layers.0.self_attn.in_proj_weight");
  EXPECT_EQ(f.tensors.back().name, "norm.bias");
  Result<Model<double>> back = model_from_safetensors<double>(f, "mem");
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_EQ(back->config(), m.config());
  for (size_t i = 0; i < m.params().size(); ++i) EXPECT_EQ(float(back->params()[i]), m.params()[i]);
}

TEST(ModelFile, MissingTensor) {
  SafetensorsFile f = model_to_safetensors(small_model(small_config()));
  f.tensors.erase(f.tensors.begin() + 5);  // layers.0.linear1.bias
  EXPECT_EQ(load_error(f), "m.safetensors: missing tensor 'layers.0.linear1.bias': expected shape [16]");
}

TEST(ModelFile, WrongShape) {
  SafetensorsFile f = model_to_safetensors(small_model(small_config()));
  f.tensors[4] = from_float_tensor("layers.0.linear1.weight", Tensor<float>({8, 16}), DType::F32);
  EXPECT_EQ(load_error(f), "m.safetensors: tensor 'layers.0.linear1.weight': expected shape [16, 8], got [8, 16]");
}

TEST(ModelFile, UnexpectedTensor) {
  SafetensorsFile f = model_to_safetensors(small_model(small_config()));
  f.add(from_float_tensor("layers.2.linear1.weight", Tensor<float>({16, 8}), DType::F32));
  EXPECT_EQ(load_error(f), "m.safetensors: unexpected tensor 'layers.2.linear1.weight': not a parameter of this config");
}

TEST(ModelFile, ConfigProblems) {
  SafetensorsFile f = model_to_safetensors(small_model(small_config()));
  f.metadata["blocklab.config"] = R"({"d_model": 8, "n_heads": 2, "d_ff": 16, "colour": "red"})";
  EXPECT_EQ(load_error(f).substr(0, 45), "m.safetensors: config: unknown key 'colour': ");
  f.metadata["blocklab.config"] = R"({"d_model": 8, "n_heads": 2, "placement": "middle"})";
  EXPECT_EQ(load_error(f), "m.safetensors: config key 'placement': expected one of \"pre\" \"post\", got \"middle\"");
  f.metadata["blocklab.config"] = "{not json";
  EXPECT_NE(load_error(f).find("config is not valid JSON"), std::string::npos);
  f.metadata.clear();
  EXPECT_EQ(load_error(f).substr(0, 50), "m.safetensors: __metadata__ has no \"blocklab.confi");
}

TEST(ModelFile, ConfigOverrideForFilesSavedByPyTorch) {
  SafetensorsFile f = model_to_safetensors(small_model(small_config()));
  f.metadata.clear();  // as torch's safetensors.save_file(model.state_dict()) leaves it
  const ModelConfig c = small_config();
  Result<Model<float>> r = model_from_safetensors<float>(f, "m", &c);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->config(), c);
}

TEST(ModelFile, RmsNormAndNoNormLayouts) {
  ModelConfig c = small_config();
  c.norm = Norm::rmsnorm;
  SafetensorsFile f = model_to_safetensors(small_model(c));
  EXPECT_EQ(f.find("layers.0.norm1.bias"), nullptr);
  EXPECT_NE(f.find("layers.0.norm1.weight"), nullptr);
  EXPECT_NE(f.find("norm.weight"), nullptr);
  c.norm = Norm::none;
  c.final_norm = false;
  c.vocab_size = 11;
  f = model_to_safetensors(small_model(c));
  EXPECT_EQ(f.find("layers.0.norm1.weight"), nullptr);
  EXPECT_EQ(f.find("embed.weight")->shape, (Shape{11, 8}));
  EXPECT_EQ(f.find("head.bias")->shape, (Shape{11}));
}

}  // namespace
}  // namespace blocklab::io
