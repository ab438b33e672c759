// GPT-2 checkpoint folders (io/gpt2.h): config.json onto the engine's config, Hugging Face's tensor names and
// Conv1D layout onto the engine's parameters, F32 / F16 / BF16 from the mapped file, and every bad folder, file,
// key and tensor named with expected vs got. The numbers against PyTorch: tests/engine/parity_test.cpp (Gpt2Parity).
#include "io/gpt2.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "io/model_file.h"
#include "io/safetensors.h"

namespace blocklab::io {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string kFixtures = std::string(BLOCKLAB_SOURCE_DIR) + "/tests/fixtures/gpt2";

json plain_config() {
  std::ifstream in(kFixtures + "/plain/config.json");
  return json::parse(in);
}

std::string config_error(const json& j) {
  Result<ModelConfig> r = gpt2_config_from_json(j, "config.json");
  EXPECT_FALSE(r.is_ok()) << j.dump();
  return r.is_ok() ? "" : r.status().message();
}

TEST(Gpt2Config, MapsOntoTheEnginesKeys) {
  Result<ModelConfig> c = read_gpt2_config(kFixtures + "/plain");
  ASSERT_TRUE(c.is_ok()) << c.status().message();
  EXPECT_EQ(c->d_model, 32);
  EXPECT_EQ(c->n_heads, 4);
  EXPECT_EQ(c->n_layers, 2);
  EXPECT_EQ(c->d_ff, 80);  // n_inner
  EXPECT_EQ(c->vocab_size, 61);
  EXPECT_EQ(c->max_seq_len, 16);  // n_positions: wpe
  EXPECT_EQ(c->eps, 1e-6);
  EXPECT_EQ(c->activation, Activation::gelu_tanh);  // gelu_pytorch_tanh
  EXPECT_EQ(c->norm, Norm::layernorm);
  EXPECT_EQ(c->placement, Placement::pre);
  EXPECT_TRUE(c->causal);
  EXPECT_TRUE(c->final_norm);
  EXPECT_TRUE(c->tied_head);
  EXPECT_TRUE(c->residual);
  EXPECT_EQ(c->residual_alpha, 1.0);
  EXPECT_EQ(c->dropout, 0.0);  // attn_pdrop etc. are ignored: forward and backward apply no dropout

  json j = plain_config();
  j["n_inner"] = nullptr;
  EXPECT_EQ(gpt2_config_from_json(j, "c").value().d_ff, 128);  // 4 n_embd
  j.erase("n_inner");
  j.erase("layer_norm_epsilon");
  j.erase("activation_function");
  ModelConfig defaults = gpt2_config_from_json(j, "c").value();
  EXPECT_EQ(defaults.d_ff, 128);
  EXPECT_EQ(defaults.eps, 1e-5);                         // GPT2Config's default
  EXPECT_EQ(defaults.activation, Activation::gelu_tanh);  // "gelu_new"
  j["activation_function"] = "gelu";
  EXPECT_EQ(gpt2_config_from_json(j, "c").value().activation, Activation::gelu);
  j["activation_function"] = "relu";
  EXPECT_EQ(gpt2_config_from_json(j, "c").value().activation, Activation::relu);
}

TEST(Gpt2Config, RefusesWhatTheEngineDoesNotComputeNamingTheKey) {
  auto with = [](const std::string& key, const json& value) {
    json j = plain_config();
    j[key] = value;
    return j;
  };
  json missing = plain_config();
  missing.erase("n_embd");
  EXPECT_EQ(config_error(missing), "config.json: key 'n_embd': expected an integer in 1..65536 (the width), got no such key");
  EXPECT_EQ(config_error(with("n_head", 5)), "config.json: key 'n_head': expected a divisor of n_embd 32, got 5");
  EXPECT_EQ(config_error(with("n_layer", 0)), "config.json: key 'n_layer': expected an integer in 1..4096 (blocks), got 0");
  EXPECT_EQ(config_error(with("vocab_size", "50257")),
            "config.json: key 'vocab_size': expected an integer in 1..1048576 (tokens of wte), got \"50257\"");
  EXPECT_EQ(config_error(with("n_positions", 1 << 17)),
            "config.json: key 'n_positions': expected an integer in 1..65536 (positions of wpe), got 131072");
  EXPECT_EQ(config_error(with("n_inner", -3)), "config.json: key 'n_inner': expected null (4 n_embd) or an integer in 1..262144, got -3");
  EXPECT_EQ(config_error(with("layer_norm_epsilon", 0)), "config.json: key 'layer_norm_epsilon': expected a finite number > 0, got 0");
  EXPECT_EQ(config_error(with("activation_function", "silu")),
            "config.json: key 'activation_function': expected one of \"gelu_new\" \"gelu_pytorch_tanh\" (tanh GELU), \"gelu\" "
            "(erf), \"relu\" (what the engine computes), got \"silu\"");
  EXPECT_EQ(config_error(with("model_type", "gpt_neo")), "config.json: key 'model_type': expected \"gpt2\", got \"gpt_neo\"");
  EXPECT_EQ(config_error(with("scale_attn_by_inverse_layer_idx", true)),
            "config.json: key 'scale_attn_by_inverse_layer_idx': expected false (the only value the engine computes), got true");
  EXPECT_EQ(config_error(with("scale_attn_weights", false)),
            "config.json: key 'scale_attn_weights': expected true (the only value the engine computes), got false");
  EXPECT_EQ(config_error(with("tie_word_embeddings", false)),
            "config.json: key 'tie_word_embeddings': expected true (the only value the engine computes), got false");
  EXPECT_EQ(config_error(with("add_cross_attention", true)),
            "config.json: key 'add_cross_attention': expected false (the only value the engine computes), got true");
  EXPECT_EQ(config_error(json::array()), "config.json: expected a JSON object (GPT-2's config), got array");
  // Sizes the engine takes one by one, but not together: the parameter count.
  json huge = with("n_embd", 65536);
  huge["n_head"] = 1;
  huge["n_layer"] = 4096;
  EXPECT_NE(config_error(huge).find("config.json: config: the model would have"), std::string::npos);
}

// A scratch copy of a fixture folder whose tensors a test may change.
class Gpt2Folder : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("blocklab_gpt2_" + std::to_string(::getpid()) + "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::copy_file(kFixtures + "/plain/config.json", dir_ / "config.json");
    file_ = read_safetensors(kFixtures + "/plain/model.safetensors").value();
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string dir() const { return dir_.string(); }
  std::string weights() const { return (dir_ / "model.safetensors").string(); }
  void write() { ASSERT_TRUE(write_safetensors(weights(), file_).is_ok()); }
  StoredTensor* tensor(const std::string& name) {
    for (StoredTensor& t : file_.tensors)
      if (t.name == name) return &t;
    ADD_FAILURE() << "no " << name;
    return nullptr;
  }
  std::string load_error() {
    Result<Model<float>> m = load_model<float>(dir());
    EXPECT_FALSE(m.is_ok());
    return m.is_ok() ? "" : m.status().message();
  }

  fs::path dir_;
  SafetensorsFile file_;
};

// The engine's parameter `param` of a model, and what the file holds for it (transposed for a Conv1D weight).
void expect_holds(const Model<float>& m, const std::vector<float>& stored, const Shape& shape, const std::string& param,
                  bool transpose) {
  const ParamSpec* spec = m.layout().find(param);
  ASSERT_NE(spec, nullptr) << param;
  ASSERT_EQ(spec->numel(), int64_t(stored.size())) << param;
  const float* p = m.params().data() + spec->offset;
  for (int64_t i = 0; i < spec->numel(); ++i) {
    const int64_t r = i / shape.back(), c = i % shape.back();  // the stored element [r, c]
    const int64_t at = transpose ? c * shape[0] + r : i;
    ASSERT_EQ(std::memcmp(&p[at], &stored[size_t(i)], 4), 0) << param << "[" << i << "]";
  }
}

TEST_F(Gpt2Folder, EveryTensorLandsInItsParameterTransposedWhereConv1D) {
  for (const std::string name : {"plain", "prefixed", "half"}) {
    Result<Model<float>> m = load_model<float>(kFixtures + "/" + name);
    ASSERT_TRUE(m.is_ok()) << m.status().message();
    EXPECT_EQ(m->layout().find("head.weight"), nullptr);
    const SafetensorsFile f = read_safetensors(kFixtures + "/" + name + "/model.safetensors").value();
    const std::string prefix = name == "prefixed" ? kGpt2Prefix : "";
    const std::vector<Gpt2Tensor> expected = gpt2_tensors(m->config());
    EXPECT_EQ(expected.size(), m->layout().specs().size());  // every parameter comes from the file
    for (const Gpt2Tensor& e : expected) {
      const StoredTensor* t = f.find(prefix + e.name);
      ASSERT_NE(t, nullptr) << prefix + e.name;
      EXPECT_EQ(t->dtype, name == "half" ? DType::F16 : DType::F32);
      expect_holds(m.value(), to_float_tensor<float>(*t, "fixture").value().data, t->shape, e.param, e.transpose);
    }
  }
}

TEST_F(Gpt2Folder, Bfloat16IsConverted) {
  // Each F32 tensor as BF16 (its upper 16 bits): the loader must give exactly those values back.
  std::map<std::string, std::vector<float>> truncated;
  for (StoredTensor& t : file_.tensors) {
    const size_t n = t.bytes.size() / 4;
    std::vector<uint8_t> half(n * 2);
    std::vector<float> values(n);
    for (size_t i = 0; i < n; ++i) {
      uint32_t bits;
      std::memcpy(&bits, t.bytes.data() + 4 * i, 4);
      const uint16_t top = uint16_t(bits >> 16);
      std::memcpy(half.data() + 2 * i, &top, 2);
      const uint32_t back = uint32_t(top) << 16;
      std::memcpy(&values[i], &back, 4);
    }
    t.dtype = DType::BF16;
    t.bytes = std::move(half);
    truncated[t.name] = std::move(values);
  }
  write();
  Result<Model<float>> m = load_model<float>(dir());
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  for (const Gpt2Tensor& e : gpt2_tensors(m->config()))
    expect_holds(m.value(), truncated.at(e.name), e.shape, e.param, e.transpose);
}

TEST_F(Gpt2Folder, FolderErrorsNameWhatIsMissing) {
  const std::string d = dir();
  EXPECT_EQ(load_error(), d + ": no model.safetensors: expected the weights as one safetensors file, as "
                               "huggingface.co/openai-community/gpt2 publishes them (docs/gpt2.md)");
  std::ofstream(dir_ / "pytorch_model.bin") << "PK";
  EXPECT_NE(load_error().find("(it has pytorch_model.bin, a PyTorch pickle, which BlockLab does not read)"), std::string::npos);
  fs::remove(dir_ / "config.json");
  EXPECT_EQ(load_error(), d + ": a folder without config.json: expected a model file, or a GPT-2 folder as Hugging Face "
                               "publishes it (config.json and model.safetensors; docs/gpt2.md)");
  std::ofstream(dir_ / "config.json") << "{\"n_embd\": 32,";
  EXPECT_EQ(load_error().rfind(d + "/config.json: not valid JSON: ", 0), 0u);
  write();
  fs::copy_file(kFixtures + "/plain/config.json", dir_ / "config.json", fs::copy_options::overwrite_existing);
  const ModelConfig override_config;
  Result<Model<float>> with_override = load_model<float>(d, &override_config);
  ASSERT_FALSE(with_override.is_ok());
  EXPECT_EQ(with_override.status().message(), d + ": a GPT-2 folder's config is its config.json: expected no --config, got one");
  EXPECT_TRUE(load_model<float>(d).is_ok());
}

TEST_F(Gpt2Folder, TensorErrorsNameTheTensorExpectedVsGot) {
  const std::string w = weights();
  // missing
  file_.tensors.erase(std::find_if(file_.tensors.begin(), file_.tensors.end(),
                                   [](const StoredTensor& t) { return t.name == "h.1.ln_2.bias"; }));
  write();
  EXPECT_EQ(load_error(), w + ": missing tensor 'h.1.ln_2.bias': expected shape [32] (names without the 'transformer.' prefix)");
  SetUp();
  // a Conv1D weight in Linear's layout
  StoredTensor* fc = tensor("h.0.mlp.c_fc.weight");
  fc->shape = {80, 32};
  write();
  EXPECT_EQ(load_error(), w + ": tensor 'h.0.mlp.c_fc.weight': expected shape [32, 80] (Conv1D [in, out]), got [80, 32]");
  SetUp();
  // a block the config does not have, and a name of another model
  StoredTensor extra = *tensor("h.1.ln_1.weight");
  extra.name = "h.2.ln_1.weight";
  file_.add(extra);
  write();
  EXPECT_EQ(load_error(), w + ": unexpected tensor 'h.2.ln_1.weight': not a GPT-2 tensor of this config (n_layer 2, names "
                               "without the 'transformer.' prefix; docs/gpt2.md)");
  SetUp();
  extra.name = "transformer.h.0.ln_1.weight";  // one prefixed name among unprefixed ones
  file_.add(extra);
  write();
  EXPECT_NE(load_error().find("unexpected tensor 'transformer.h.0.ln_1.weight'"), std::string::npos);
  SetUp();
  // integers where floats belong
  StoredTensor* ln = tensor("ln_f.bias");
  ln->dtype = DType::I32;
  write();
  EXPECT_EQ(load_error(), w + ": tensor 'ln_f.bias': dtype: expected F32, F64, F16 or BF16, got I32");
  SetUp();
  // an lm_head that is not wte
  StoredTensor head = *tensor("wte.weight");
  head.name = "lm_head.weight";
  float v;
  std::memcpy(&v, head.bytes.data() + 4 * (3 * 32 + 5), 4);
  v += 1.0f;
  std::memcpy(head.bytes.data() + 4 * (3 * 32 + 5), &v, 4);
  file_.add(head);
  write();
  EXPECT_EQ(load_error().rfind(w + ": tensor 'lm_head.weight': expected the values of wte.weight (the head is tied to wte), "
                                   "got another value at [3, 5]: ", 0),
            0u);
  SetUp();
  head.shape = {60, 32};
  head.bytes.resize(60 * 32 * 4);
  file_.add(head);
  write();
  EXPECT_EQ(load_error(), w + ": tensor 'lm_head.weight': expected shape [61, 32] (wte's: the head is tied), got [60, 32]");
  SetUp();
  // not a safetensors file at all
  std::ofstream(weights()) << "{\"oops\": 1}";
  EXPECT_NE(load_error().find(w + ": not a safetensors file"), std::string::npos);
  std::ofstream(weights(), std::ios::trunc).close();
  EXPECT_EQ(load_error(), w + ": truncated: expected at least 8 bytes (the header length), got 0");
}

TEST(MappedSafetensors, IndexesLikeTheParserAndReleasesPages) {
  const std::string path = kFixtures + "/plain/model.safetensors";
  Result<MappedSafetensors> mapped = MappedSafetensors::open(path);
  ASSERT_TRUE(mapped.is_ok()) << mapped.status().message();
  const SafetensorsFile parsed = read_safetensors(path).value();
  ASSERT_EQ(mapped->index().tensors.size(), parsed.tensors.size());
  for (size_t i = 0; i < parsed.tensors.size(); ++i) {
    const TensorView& v = mapped->index().tensors[i];
    EXPECT_EQ(v.name, parsed.tensors[i].name);
    EXPECT_EQ(v.shape, parsed.tensors[i].shape);
    ASSERT_EQ(v.bytes.size(), parsed.tensors[i].bytes.size());
    mapped->release(v);  // the view stays readable: its pages are read back from the file
    EXPECT_EQ(std::memcmp(v.bytes.data(), parsed.tensors[i].bytes.data(), v.bytes.size()), 0) << v.name;
  }
  EXPECT_EQ(mapped->index().metadata, parsed.metadata);
  MappedSafetensors moved = std::move(mapped.value());
  EXPECT_EQ(moved.index().tensors.size(), parsed.tensors.size());
  EXPECT_FALSE(MappedSafetensors::open(kFixtures + "/plain").is_ok());  // a folder is not a file
  EXPECT_FALSE(MappedSafetensors::open(kFixtures + "/none.safetensors").is_ok());
}

}  // namespace
}  // namespace blocklab::io
