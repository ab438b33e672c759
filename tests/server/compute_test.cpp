// The widgets' computations called directly on JSON (no socket), at the edges issue 11 found: bodies
// nested too deep, numbers beyond float32, results that overflow float32, and model files whose training
// metadata or alphabet is wrong. Every 200 must be free of null where a finite answer exists.
#include "server/compute.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cfloat>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "engine/params.h"
#include "io/json_limits.h"
#include "io/model_file.h"
#include "io/safetensors.h"
#include "lab/gradflow.h"

namespace blocklab::server {
namespace {

// An upload as the server takes it: the body written to a file in the upload folder, then handed over.
Result<ModelInfo> upload(ModelRegistry& r, const std::string& bytes) {
  const std::string path = r.upload_dir() + "/.part-test";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
  }
  bool over_quota = false;
  Result<ModelRegistry::Upload> up = r.add_upload_file(path, {}, &over_quota);
  std::error_code ec;
  std::filesystem::remove(path, ec);
  if (!up) return up.status();
  return up->info;
}

namespace fs = std::filesystem;

// Throws on anything but an ApiError; returns it.
template <typename F>
ApiError api_error(F&& f) {
  try {
    f();
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "expected an ApiError";
  return ApiError(0, "", "");
}

// The JSON path of the first null or non-finite number in `j`, or "" when there is none.
std::string first_null(const json& j, const std::string& at = "") {
  if (j.is_null()) return at.empty() ? "(root)" : at;
  if (j.is_number_float() && !std::isfinite(j.get<double>())) return at;
  if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i)
      if (std::string p = first_null(j[i], at + "[" + std::to_string(i) + "]"); !p.empty()) return p;
  } else if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it)
      if (std::string p = first_null(it.value(), at + "." + it.key()); !p.empty()) return p;
  }
  return "";
}

class Compute : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("blocklab_compute_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "builtin");
    // A block stack (not a language model) beside the shipped chars model.
    ModelConfig c;
    c.d_model = 8;
    c.n_heads = 2;
    c.d_ff = 16;
    c.n_layers = 2;
    Model<float> m = std::move(Model<float>::create(c).value());
    init_parameters(m.layout(), 1, m.params().data());
    ASSERT_TRUE(io::save_model((dir_ / "builtin" / "stack.safetensors").string(), m).is_ok());
    fs::copy_file(fs::path(BLOCKLAB_SOURCE_DIR) / "models" / "chars-small.safetensors",
                  dir_ / "builtin" / "chars-small.safetensors");
    Result<std::unique_ptr<ModelRegistry>> r =
        ModelRegistry::open((dir_ / "builtin").string(), (dir_ / "uploads").string());
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    models_ = std::move(r.value()).release();
    ASSERT_TRUE(models_->warnings().empty()) << models_->warnings()[0];
  }
  static void TearDownTestSuite() {
    delete models_;
    models_ = nullptr;
    fs::remove_all(dir_);
  }

  static fs::path dir_;
  static ModelRegistry* models_;
  Limits L;
};
fs::path Compute::dir_;
ModelRegistry* Compute::models_ = nullptr;

// ---- Item 2: nesting depth -----------------------------------------------------------------------

TEST_F(Compute, ABodyNested60000DeepIsABadJson400NamingTheLimit) {
  const std::string body = "{\"x\": " + std::string(60000, '[') + std::string(60000, ']') + "}";  // 120 KB
  ApiError e = api_error([&] { parse_body(body); });
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.code, "bad_json");
  EXPECT_NE(std::string(e.what()).find("nested deeper than 64 levels"), std::string::npos) << e.what();
  // Within the limit it parses, and the reader refuses it as a bad matrix with a short message.
  const std::string ok = "{\"x\": " + std::string(60, '[') + std::string(60, ']') + "}";
  const json j = parse_body(ok);
  e = api_error([&] { compute_layernorm(j, L); });
  EXPECT_EQ(e.status, 400);
  EXPECT_LT(std::string(e.what()).size(), 400u);
}

TEST_F(Compute, ErrorMessagesNeverPrintADeepValueWhole) {
  json deep = 1;
  for (int i = 0; i < 100000; ++i) deep = json::array({std::move(deep)});  // built, not parsed
  const json req = {{"x", std::move(deep)}};
  ApiError e = api_error([&] { compute_layernorm(req, L); });
  EXPECT_EQ(e.status, 400);
  EXPECT_LE(std::string(e.what()).size(), 400u) << e.what();
  e = api_error([&] { bad_field("f", "a number", req); });
  EXPECT_NE(std::string(e.what()).find("f: expected a number, got {\"x\":[[[[[[[["), std::string::npos) << e.what();
}

// ---- Item 7: numbers beyond float32, results that overflow ---------------------------------------

TEST_F(Compute, ValuesBeyondFloat32AreRefusedNamingTheElement) {
  ApiError e = api_error([&] { compute_layernorm(json::parse(R"({"x": [[1e39, 1, 2]]})"), L); });
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.field, "x[0][0]");
  EXPECT_EQ(std::string(e.what()), "x[0][0]: expected a finite number within float32 (|v| <= 3.4e38), got 1e+39");
  e = api_error([&] { compute_rmsnorm(json::parse(R"({"x": [1, 2], "gamma": [1, -4e38]})"), L); });
  EXPECT_EQ(e.field, "gamma[1]");
  e = api_error([&] { compute_residual(json::parse(R"({"x": [[1]], "f": [[-1e300]]})"), *models_, L); });
  EXPECT_EQ(e.field, "f[0][0]");
  // FLT_MAX itself is fine.
  EXPECT_EQ(first_null(compute_rmsnorm({{"x", {double(FLT_MAX), 1.0}}}, L)), "");
}

TEST_F(Compute, RmsNormOfEqualHugeValuesIsOnes) {
  const json r = compute_rmsnorm(json::parse(R"({"x": [[1e20, 1e20, 1e20]]})"), L);
  EXPECT_EQ(first_null(r), "") << r.dump();
  for (const json& v : r["out"][0]) EXPECT_NEAR(v.get<double>(), 1.0, 1e-6);
  EXPECT_NEAR(r["mean_square"][0].get<double>() / 1e40, 1.0, 1e-6);  // beyond float32: answered in float64
  EXPECT_NEAR(r["rms"][0].get<double>() / 1e20, 1.0, 1e-6);
}

TEST_F(Compute, NormsOfExtremeButValidRowsAreFiniteAndCorrect) {
  for (const char* x : {R"([[1e20, 1e20, 1e20]])", R"([[3e38, -3e38, 3e38]])", R"([[1e-45, 0, -1e-45]])",
                        R"([[3.4e38, 3.4e38, -3.4e38, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]])"}) {
    const json req = {{"x", json::parse(x)}, {"eps", 1e-12}};
    const json ln = compute_layernorm(req, L), rms = compute_rmsnorm(req, L);
    EXPECT_EQ(first_null(ln), "") << x << " " << ln.dump();
    EXPECT_EQ(first_null(rms), "") << x << " " << rms.dump();
    // LayerNorm's output has mean 0 and variance 1 (unless the row is ~constant next to eps).
    double mean = 0, sq = 0;
    const size_t d = ln["out"][0].size();
    for (const json& v : ln["out"][0]) mean += v.get<double>() / double(d);
    for (const json& v : ln["out"][0]) sq += (v.get<double>() - mean) * (v.get<double>() - mean) / double(d);
    EXPECT_NEAR(mean, 0.0, 1e-5) << x;
    const bool spread = std::string(x).find("1e-45") == std::string::npos && std::string(x).find("1e20") == std::string::npos;
    EXPECT_NEAR(sq, spread ? 1.0 : 0.0, 1e-4) << x;  // a constant row (or one tiny next to eps) normalises to 0
  }
  const json ln = compute_layernorm(json::parse(R"({"x": [[3e38, -3e38, 3e38]]})"), L);
  EXPECT_NEAR(ln["centered"][0][1].get<double>(), -4e38, 1e33);  // beyond float32: float64
  EXPECT_NEAR(ln["normalized"][0][1].get<double>(), -std::sqrt(2.0), 1e-5);
  const json bn = compute_batchnorm(json::parse(R"({"x": [[3e38, 1], [-3e38, 2], [3e38, 3]]})"), L);
  EXPECT_EQ(first_null(bn), "") << bn.dump();
  EXPECT_NEAR(bn["normalized"][1][0].get<double>(), -std::sqrt(2.0), 1e-5);
}

TEST_F(Compute, AnOutputBeyondFloat32IsA422NamingTheFieldNotANull) {
  ApiError e = api_error([&] { compute_layernorm(json::parse(R"({"x": [[1, 2, 3]], "gamma": [3e38, 3e38, 3e38]})"), L); });
  EXPECT_EQ(e.status, 422);
  EXPECT_EQ(e.code, "overflow");
  EXPECT_EQ(e.field, "gamma");
  EXPECT_NE(std::string(e.what()).find("out[0][0]: expected a result within float32"), std::string::npos) << e.what();
  e = api_error([&] { compute_residual(json::parse(R"({"x": [[3e38]], "f": [[3e38]], "alpha": 100})"), *models_, L); });
  EXPECT_EQ(e.status, 422);
  EXPECT_EQ(e.field, "alpha");
  e = api_error([&] {
    compute_ffn(json::parse(R"({"x": [[3e38, 3e38]], "w1": [[3e38, 3e38]], "w2": [[1], [1]]})"), *models_, L);
  });
  EXPECT_EQ(e.status, 422);
  EXPECT_EQ(e.field, "w1");
  // Extreme but representable: finite answers.
  const json res = compute_residual(json::parse(R"({"x": [[3e36, 1e-45]], "f": [[3e36, -1e-45]], "alpha": 100})"), *models_, L);
  EXPECT_EQ(first_null(res), "") << res.dump();
  const json ffn = compute_ffn(json::parse(R"({"x": [[1e18, -1e18]], "w1": [[1e18, 0], [0, 1e18]], "w2": [[1e-30, 0], [0, 1e-30]], "activation": "relu"})"),
                               *models_, L);
  EXPECT_EQ(first_null(ffn), "") << ffn.dump();
  for (const char* act : {"relu", "gelu", "gelu_tanh"}) {
    const json big = compute_ffn({{"x", {{1e19, -1e19}}}, {"w1", {{1e19, 0}, {0, 1e19}}}, {"w2", {{1e-30, 0}, {0, 1e-30}}},
                                  {"activation", act}},
                                 *models_, L);
    EXPECT_EQ(first_null(big), "") << act << " " << big.dump();
  }
}

TEST_F(Compute, BlockWithExtremeEditsAndOverridesIsFiniteOrA422) {
  // Tiny eps and a huge alpha: finite (the norms bring every block back).
  json r = compute_block({{"model", "stack"}, {"x", {{3e38, -3e38, 1, 2, 3, 4, 5, 6}}},
                          {"overrides", {{"eps", 1e-12}, {"alpha", 100}}}},
                         *models_, L);
  EXPECT_EQ(first_null(r["output"]), "") << r["output"].dump();
  EXPECT_EQ(first_null(r["tracker"]), "");
  // A weight of 3e38 makes the attention's projections overflow: 422, not nulls.
  json edit = {{"name", "layers.0.self_attn.in_proj_weight"}, {"values", std::vector<double>(24 * 8, 3e38)}};
  ApiError e = api_error([&] {
    compute_block({{"model", "stack"}, {"x", {{3e38, -3e38, 1, 2, 3, 4, 5, 6}}}, {"param_edits", {edit}}}, *models_, L);
  });
  EXPECT_EQ(e.status, 422);
  EXPECT_EQ(e.field, "param_edits");
  // A language model with text and a tiny eps: no nulls outside the masked scores.
  r = compute_block({{"model", "chars-small"}, {"text", "the "}, {"overrides", {{"eps", 1e-12}}}, {"trace", false}}, *models_, L);
  EXPECT_EQ(first_null(r["predictions"]), "");
  EXPECT_EQ(first_null(r["logits"]), "");
}

// Issue 14: the sentence is read in characters. A character of two or more UTF-8 bytes is refused as itself (the
// message quoted one of its bytes, U+FFFD), and the length is counted in characters, not bytes.
// Characters of UTF-8 text, as every text limit and position counts them (compute/block's text, the
// assistant's question, a comment's body).
TEST(Utf8, CharactersNotBytes) {
  EXPECT_EQ(utf8_length(""), 0u);
  EXPECT_EQ(utf8_length("abc"), 3u);
  EXPECT_EQ(utf8_length("h\xc3\xa9llo"), 5u);                    // é: 2 bytes
  EXPECT_EQ(utf8_length("\xe2\x82\xac\xf0\x9f\x98\x80"), 2u);    // €, 😀: 3 and 4 bytes
  const std::string s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
  EXPECT_EQ(utf8_char_bytes(s, 0), 1u);
  EXPECT_EQ(utf8_char_bytes(s, 1), 2u);
  EXPECT_EQ(utf8_char_bytes(s, 3), 3u);
  EXPECT_EQ(utf8_char_bytes(s, 6), 4u);
  EXPECT_EQ(utf8_char_bytes("\xc3", 0), 1u);        // cut short: one byte, never past the end
  EXPECT_EQ(utf8_char_bytes("\xe2\x28\xa1", 0), 1u);  // not a continuation byte
  EXPECT_EQ(utf8_char_bytes("\x80", 0), 1u);        // a stray continuation byte
}

TEST_F(Compute, BlockTextIsReadInCharactersAndARefusalQuotesTheCharacterTyped) {
  ApiError e = api_error([&] { compute_block({{"model", "chars-small"}, {"text", "h\xc3\xa9llo"}, {"trace", false}}, *models_, L); });
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.field, "text[1]");
  EXPECT_STREQ(e.what(), "text[1]: expected a character of the model's alphabet, got \"\xc3\xa9\"");
  e = api_error([&] { compute_block({{"model", "chars-small"}, {"text", "ab \xf0\x9f\x98\x80!"}, {"trace", false}}, *models_, L); });
  EXPECT_EQ(e.field, "text[3]");
  EXPECT_STREQ(e.what(), "text[3]: expected a character of the model's alphabet, got \"\xf0\x9f\x98\x80\"");
  // an ASCII character outside the alphabet, as before
  e = api_error([&] { compute_block({{"model", "chars-small"}, {"text", "the Z"}, {"trace", false}}, *models_, L); });
  EXPECT_STREQ(e.what(), "text[4]: expected a character of the model's alphabet, got \"Z\"");
  // 64 characters (the model's max_seq_len), 65 bytes: not too long; its é is what is refused, at its position
  const std::string at_limit = std::string(63, 'a') + "\xc3\xa9";
  e = api_error([&] { compute_block({{"model", "chars-small"}, {"text", at_limit}, {"trace", false}}, *models_, L); });
  EXPECT_EQ(e.status, 400) << e.what();
  EXPECT_EQ(e.field, "text[63]");
  // 65 characters: too long, counted in characters
  e = api_error([&] { compute_block({{"model", "chars-small"}, {"text", at_limit + "a"}, {"trace", false}}, *models_, L); });
  EXPECT_EQ(e.status, 413);
  EXPECT_EQ(e.field, "text");
  EXPECT_STREQ(e.what(), "text: expected at most 64 characters, got 65");
  // 64 characters of the alphabet are read
  const json ok = compute_block({{"model", "chars-small"}, {"text", std::string(64, 'a')}, {"trace", false}}, *models_, L);
  EXPECT_EQ(ok["track"], 63);
}

TEST_F(Compute, GradientFlowThatOverflowsFloat32IsMeasuredInFloat64) {
  // alpha 100 without norms: the activations grow 100x a block, past float32 (1e38) by block 20.
  const json req = {{"n_layers", 24}, {"norm", "none"}, {"alpha", 100}, {"d_model", 8}, {"n_heads", 2}, {"d_ff", 16},
                    {"batch", 1}, {"seq_len", 4}};
  try {
    const json r = compute_gradient_flow(req, L);
    EXPECT_EQ(first_null(r["layers"]), "") << r.dump();
    EXPECT_EQ(first_null(r["loss"]), "");
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 422) << e.what();  // even float64 overflowed: said so, naming the knob
    EXPECT_EQ(e.field, "residual_alpha");
  }
  const json r = compute_gradient_flow({{"n_layers", 4}, {"eps", 1e-12}, {"d_model", 8}, {"n_heads", 2}}, L);
  EXPECT_EQ(first_null(r["layers"]), "");
}

// Answers are kept per request as read: the same question (spelled differently, or with its defaults written
// out) gets the measurement's answer again, and any other seed, shape or config its own.
TEST_F(Compute, GradientFlowAnswersAreKeptPerQuestion) {
  const json base = {{"n_layers", 3}, {"d_model", 8}, {"n_heads", 2}, {"d_ff", 16}, {"batch", 2}, {"seq_len", 5}};
  ModelConfig c;
  c.n_layers = 3;
  c.d_model = 8;
  c.n_heads = 2;
  c.d_ff = 16;
  const json fresh = lab::to_json(lab::measure_gradient_flow(c, 2, 5, 0).value());
  EXPECT_EQ(compute_gradient_flow(base, L), fresh);
  EXPECT_EQ(compute_gradient_flow(base, L), fresh);  // kept
  json spelled = base;
  spelled["seed"] = 0;
  spelled["placement"] = "pre";
  EXPECT_EQ(compute_gradient_flow(spelled, L), fresh);
  for (const auto& [key, value] : {std::pair<std::string, json>{"seed", 1}, {"batch", 3}, {"seq_len", 4},
                                   {"placement", "post"}, {"residual", false}}) {
    json other = base;
    other[key] = value;
    ModelConfig oc = c;
    int64_t batch = 2, seq = 5;
    uint64_t seed = 0;
    if (key == "seed") seed = 1;
    if (key == "batch") batch = 3;
    if (key == "seq_len") seq = 4;
    if (key == "placement") oc.placement = Placement::post;
    if (key == "residual") oc.residual = false;
    const json want = lab::to_json(lab::measure_gradient_flow(oc, batch, seq, seed).value());
    EXPECT_NE(want, fresh) << key;
    EXPECT_EQ(compute_gradient_flow(other, L), want) << key;
  }
}

// ---- Item 5: the server's limits on a config ------------------------------------------------------

TEST_F(Compute, CheckConfigLimitsNamesTheKey) {
  ModelConfig c;
  EXPECT_TRUE(check_config_limits(c, L).is_ok());
  c.d_model = 4096;
  Status st = check_config_limits(c, L);
  ASSERT_FALSE(st.is_ok());
  EXPECT_EQ(st.message(), "config key 'd_model': expected at most 1024 (the server's limit), got 4096");
  c = ModelConfig{};
  c.n_layers = 129;
  EXPECT_NE(check_config_limits(c, L).message().find("'n_layers'"), std::string::npos);
}

// ---- Items 3, 5, 6: stored and uploaded models ------------------------------------------------------

class Registry : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("blocklab_registry_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "builtin");
    chars_ = io::read_safetensors((fs::path(BLOCKLAB_SOURCE_DIR) / "models" / "chars-small.safetensors").string()).value();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // chars-small with its training metadata replaced.
  io::SafetensorsFile with_train(const std::string& train) const {
    io::SafetensorsFile f = chars_;
    f.metadata[io::kTrainMetadataKey] = train;
    return f;
  }
  std::string bytes_of(const io::SafetensorsFile& f) const {
    const std::vector<uint8_t> b = io::serialize_safetensors(f);
    return std::string(b.begin(), b.end());
  }
  void put(const std::string& name, const io::SafetensorsFile& f) const {
    ASSERT_TRUE(io::write_safetensors((dir_ / "builtin" / name).string(), f).is_ok());
  }
  std::unique_ptr<ModelRegistry> open(ConfigCheck check = {}) const {
    Result<std::unique_ptr<ModelRegistry>> r =
        ModelRegistry::open((dir_ / "builtin").string(), (dir_ / "uploads").string(), std::move(check));
    EXPECT_TRUE(r.is_ok());
    return std::move(r.value());
  }

  fs::path dir_;
  io::SafetensorsFile chars_;
};

TEST_F(Registry, ATaskThatIsANumberIsRefusedNotA500AndSkippedAtStart) {
  const io::SafetensorsFile bad = with_train(R"({"step": 1, "options": {"task": 5}})");
  std::unique_ptr<ModelRegistry> r = open();
  Result<ModelInfo> up = upload(*r, bytes_of(bad));
  ASSERT_FALSE(up.is_ok());
  EXPECT_EQ(up.status().message(), "upload: __metadata__[\"blocklab.train\"].options.task: expected a task name (a string), got 5");
  // Stored anyway (by an older server): every later start skips it with one warning and serves the rest.
  put("bad-task.safetensors", bad);
  put("bad-json.safetensors", with_train("{\"step\": "));
  put("bad-step.safetensors", with_train(R"({"step": "many"})"));
  put("bad-alphabet-type.safetensors", with_train(R"({"step": 1, "alphabet": [1, 2]})"));
  put("deep.safetensors", with_train(std::string(70000, '[') + std::string(70000, ']')));
  put("good.safetensors", chars_);
  {
    std::ofstream junk((dir_ / "builtin" / "junk.safetensors").string(), std::ios::binary);
    junk << "PK\x03\x04 a torch.save zip";
  }
  std::unique_ptr<ModelRegistry> again = open();
  ASSERT_EQ(again->list().size(), 1u);
  EXPECT_EQ(again->list()[0].id, "good");
  ASSERT_EQ(again->warnings().size(), 6u);
  for (const std::string& w : again->warnings()) {
    EXPECT_EQ(w.rfind("skipped ", 0), 0u) << w;
    EXPECT_EQ(w.find('\n'), std::string::npos) << w;
  }
}

TEST_F(Registry, AnAlphabetShorterThanTheVocabularyIsABadModel) {
  json train = json::parse(chars_.metadata.at(io::kTrainMetadataKey));
  const std::string alphabet = train["alphabet"].get<std::string>();
  train["alphabet"] = alphabet.substr(0, alphabet.size() / 2);
  std::unique_ptr<ModelRegistry> r = open();
  Result<ModelInfo> up = upload(*r, bytes_of(with_train(train.dump())));
  ASSERT_FALSE(up.is_ok());
  EXPECT_NE(up.status().message().find("alphabet: expected " + std::to_string(alphabet.size()) +
                                       " characters (vocab_size; token i is alphabet[i]), got " +
                                       std::to_string(alphabet.size() / 2)),
            std::string::npos)
      << up.status().message();
  // The untouched model still loads, and its predictions' text is in its alphabet.
  Result<ModelInfo> ok = upload(*r, bytes_of(chars_));
  ASSERT_TRUE(ok.is_ok()) << ok.status().message();
  Limits L;
  const json out = compute_block({{"model", ok->id}, {"text", "the"}, {"trace", false}, {"top_k", 50}}, *r, L);
  for (const json& p : out["predictions"])
    for (const json& t : p["top"]) EXPECT_NE(alphabet.find(t["text"].get<std::string>()), std::string::npos);
}

TEST_F(Registry, AnUploadPastTheServersLimitsIsRefusedBeforeItIsBuilt) {
  Limits L;
  L.max_d_model = 32;  // chars-small has d_model 64
  std::unique_ptr<ModelRegistry> r = open([L](const ModelConfig& c) { return check_config_limits(c, L); });
  Result<ModelInfo> up = upload(*r, bytes_of(chars_));
  ASSERT_FALSE(up.is_ok());
  EXPECT_EQ(up.status().message(), "upload: config key 'd_model': expected at most 32 (the server's limit), got 64");
  // And a stored file past them is skipped at start.
  put("big.safetensors", chars_);
  std::unique_ptr<ModelRegistry> again = open([L](const ModelConfig& c) { return check_config_limits(c, L); });
  EXPECT_TRUE(again->list().empty());
  ASSERT_EQ(again->warnings().size(), 1u);
  EXPECT_NE(again->warnings()[0].find("expected at most 32 (the server's limit)"), std::string::npos);
}

TEST_F(Registry, HugeNumbersInAnUploadAreA4xxNotA500) {
  std::unique_ptr<ModelRegistry> r = open();
  io::SafetensorsFile f = chars_;
  f.metadata[io::kConfigMetadataKey] = R"({"d_model": 64, "eps": 1e99999})";
  Result<ModelInfo> up = upload(*r, bytes_of(f));
  ASSERT_FALSE(up.is_ok());
  EXPECT_NE(up.status().message().find("number overflow"), std::string::npos) << up.status().message();
  f.metadata[io::kConfigMetadataKey] = R"({"d_model": 4294967296, "n_heads": 1})";
  up = upload(*r, bytes_of(f));
  ASSERT_FALSE(up.is_ok());
  EXPECT_NE(up.status().message().find("config key 'd_model': expected an integer <= 65536"), std::string::npos);
}

}  // namespace
}  // namespace blocklab::server
