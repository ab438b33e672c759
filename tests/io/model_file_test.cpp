// Model files: config JSON (strict keys and values), tensors by PyTorch name and shape, and the
// round trip save -> load.
#include "io/model_file.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "io/json_limits.h"

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

// ---- Hostile configs (issue 11) ------------------------------------------------------------------

std::string text_error(const std::string& text) {
  Result<ModelConfig> r = config_from_json_text(text, "m.safetensors");
  EXPECT_FALSE(r.is_ok()) << text;
  return r.is_ok() ? "" : r.status().message();
}

TEST(ConfigJson, NumbersBeyondADoubleAreErrorsNotExceptions) {
  std::string e = text_error(R"({"eps": 1e99999})");
  EXPECT_NE(e.find("m.safetensors: config is not valid JSON: number overflow parsing '1e99999'"), std::string::npos) << e;
  e = text_error(R"({"d_model": 18446744073709551615})");  // past int64: would wrap to -1
  EXPECT_EQ(e, "m.safetensors: config key 'd_model': expected an integer, got 18446744073709551615");
  e = text_error(R"({"vocab_size": 9223372036854775808})");
  EXPECT_NE(e.find("config key 'vocab_size': expected null or an integer"), std::string::npos) << e;
}

TEST(ConfigJson, NestingTooDeepIsRefused) {
  const std::string e = text_error("{\"d_model\": " + std::string(60000, '[') + std::string(60000, ']') + "}");
  EXPECT_NE(e.find("config is not valid JSON: nested deeper than 64 levels"), std::string::npos) << e;
}

TEST(JsonLimits, DepthAtTheLimitParsesAndOneMoreIsRefused) {
  EXPECT_TRUE(parse_json_limited(std::string(64, '[') + std::string(64, ']')).is_ok());
  Result<json> r = parse_json_limited(std::string(65, '[') + std::string(65, ']'));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(), "nested deeper than 64 levels of arrays and objects: expected at most 64");
  EXPECT_FALSE(parse_json_limited("{\"a\": ").is_ok());
  EXPECT_FALSE(parse_json_limited("\"\xff\"").is_ok());  // not UTF-8
  EXPECT_EQ(parse_json_limited(R"({"a": [1, {"b": 2}]})").value()["a"][1]["b"], 2);
}

TEST(ConfigLimits, SizesPastTheEnginesLimitsAreRefusedBeforeAnyAllocation) {
  EXPECT_EQ(config_error({{"d_model", int64_t(1) << 32}, {"n_heads", 1}}),
            "config key 'd_model': expected an integer <= 65536 (the engine's limit: the width of the residual stream), "
            "got 4294967296");
  EXPECT_NE(config_error({{"n_layers", int64_t(1) << 53}}).find("config key 'n_layers': expected an integer <= 4096"),
            std::string::npos);
  EXPECT_NE(config_error({{"d_ff", 1 << 20}}).find("config key 'd_ff': expected an integer <= 262144"), std::string::npos);
  EXPECT_NE(config_error({{"n_heads", 2048}, {"d_model", 2048}}).find("config key 'n_heads': expected an integer <= 1024"),
            std::string::npos);
  EXPECT_NE(config_error({{"vocab_size", 1 << 21}}).find("config key 'vocab_size'"), std::string::npos);
  EXPECT_NE(config_error({{"vocab_size", 10}, {"max_seq_len", 1 << 17}}).find("config key 'max_seq_len'"), std::string::npos);
  // Each key within its limit, the product past 2^31 parameters.
  EXPECT_NE(config_error({{"d_model", 65536}, {"n_heads", 1}, {"d_ff", 262144}, {"n_layers", 4096}})
                .find("parameters: expected at most 2147483648"),
            std::string::npos);
  // Model::create refuses it the same way (it never allocates).
  ModelConfig huge;
  huge.d_model = int64_t(1) << 32;
  huge.n_heads = 1;
  Result<Model<float>> m = Model<float>::create(huge);
  ASSERT_FALSE(m.is_ok());
  EXPECT_NE(m.status().message().find("d_model"), std::string::npos);
}

TEST(ConfigLimits, ParameterCountIsTheLayoutsTotal) {
  for (Norm norm : {Norm::layernorm, Norm::rmsnorm, Norm::none})
    for (bool lm : {false, true}) {
      ModelConfig c;
      c.d_model = 12;
      c.n_heads = 3;
      c.d_ff = 20;
      c.n_layers = 3;
      c.norm = norm;
      c.final_norm = norm != Norm::none;
      c.alpha_learnable = lm;
      if (lm) {
        c.vocab_size = 7;
        c.max_seq_len = 5;
      }
      ASSERT_TRUE(validate(c).is_ok());
      EXPECT_EQ(parameter_count(c).value(), ParamLayout(c).total()) << name_of(norm) << lm;
    }
  EXPECT_EQ(numel_of({int64_t(1) << 40, int64_t(1) << 40}), -1);  // overflow, not a wrapped size
  EXPECT_EQ(numel_of({3, -1}), -1);
}

// A header with `n_layers` blocks of d_model 2 (d_ff 1), written directly (no model built).
std::vector<uint8_t> deep_model_file(int64_t n_layers) {
  json header = json::object();
  ModelConfig c;
  c.d_model = 2;
  c.n_heads = 1;
  c.d_ff = 1;
  c.n_layers = n_layers;
  header["__metadata__"] = {{kConfigMetadataKey, config_to_json(c).dump()}};
  struct T {
    const char* name;
    int64_t rows, cols;
  };
  const T block[] = {{"self_attn.in_proj_weight", 6, 2}, {"self_attn.in_proj_bias", 6, 0},
                     {"self_attn.out_proj.weight", 2, 2}, {"self_attn.out_proj.bias", 2, 0},
                     {"linear1.weight", 1, 2},           {"linear1.bias", 1, 0},
                     {"linear2.weight", 2, 1},           {"linear2.bias", 2, 0},
                     {"norm1.weight", 2, 0},             {"norm1.bias", 2, 0},
                     {"norm2.weight", 2, 0},             {"norm2.bias", 2, 0}};
  uint64_t offset = 0;
  for (int64_t i = 0; i < n_layers; ++i)
    for (const T& t : block) {
      const uint64_t n = uint64_t(t.rows) * uint64_t(t.cols ? t.cols : 1);
      json shape = t.cols ? json{t.rows, t.cols} : json{t.rows};
      header["layers." + std::to_string(i) + "." + t.name] = {
          {"dtype", "F32"}, {"shape", shape}, {"data_offsets", {offset, offset + 4 * n}}};
      offset += 4 * n;
    }
  const std::string text = header.dump();
  std::vector<uint8_t> out(8 + text.size() + offset, 0);
  const uint64_t len = text.size();
  std::memcpy(out.data(), &len, 8);
  std::memcpy(out.data() + 8, text.data(), text.size());
  return out;
}

// Loading is linear in the tensor count (name lookups by map, not by scanning the file's tensors): four
// times the blocks take four to six times as long here (allocation and caches), a quadratic lookup sixteen. A ratio of the same machine's times, the
// minimum of three each, so neither the machine's speed nor a sanitizer build changes the verdict.
TEST(ModelFile, LoadingIsLinearInTheTensorCount) {
  auto load_seconds = [](int64_t layers) {
    const std::vector<uint8_t> bytes = deep_model_file(layers);
    double best = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
      const auto start = std::chrono::steady_clock::now();
      Result<SafetensorsFile> f = parse_safetensors(bytes, "deep.safetensors");
      EXPECT_TRUE(f.is_ok()) << f.status().message();
      if (!f) return best;
      Result<Model<float>> m = model_from_safetensors<float>(f.value(), "deep.safetensors");
      EXPECT_TRUE(m.is_ok()) << m.status().message();
      if (m) {
        EXPECT_EQ(m->config().n_layers, layers);
      }
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    return best;
  };
  const double small = load_seconds(1024), large = load_seconds(4096);  // 4096: the limit, 49,152 tensors
  EXPECT_LT(large / small, 12.0) << "1024 blocks " << small << " s, 4096 blocks " << large << " s";
}

TEST(ModelFile, FortyThousandLayersAreRefused) {
  const std::vector<uint8_t> bytes = deep_model_file(40000);  // 480,000 tensors
  Result<SafetensorsFile> f = parse_safetensors(bytes, "deep.safetensors");
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  Result<Model<float>> m = model_from_safetensors<float>(f.value(), "deep.safetensors");
  ASSERT_FALSE(m.is_ok());
  EXPECT_EQ(m.status().message(),
            "deep.safetensors: config key 'n_layers': expected an integer <= 4096 (the engine's limit: blocks in the "
            "stack), got 40000");
}

}  // namespace
}  // namespace blocklab::io
