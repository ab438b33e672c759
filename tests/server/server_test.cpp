// The HTTP API on an ephemeral port: every endpoint and its errors, responses checked against
// docs/openapi.json, values cross-checked against the engine called directly.
#include "server/server.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "engine/kernels.h"
#include "io/checkpoint.h"
#include "io/model_file.h"
#include "lab/gradflow.h"
#include "lab/training_run.h"
#include "openapi_check.h"

namespace blocklab::server {
namespace {

namespace fs = std::filesystem;
using testing::OpenApi;

const OpenApi& openapi() {
  static const OpenApi api(std::string(BLOCKLAB_SOURCE_DIR) + "/docs/openapi.json");
  return api;
}

// Builds the test's models once: a tiny chars model (a training checkpoint, with its alphabet) and a
// tiny block stack (not a language model).
const fs::path& models_dir() {
  static const fs::path dir = [] {
    const fs::path d = fs::temp_directory_path() / ("blocklab_server_models_" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    auto store = lab::RunStore::open((d / "train.db").string()).value();
    lab::TrainRunSpec spec;
    spec.config.d_model = 16;
    spec.config.n_heads = 2;
    spec.config.d_ff = 32;
    spec.config.n_layers = 2;
    spec.config.final_norm = true;
    spec.config.causal = true;
    spec.options.task = lab::TaskKind::chars;
    spec.options.steps = 3;
    spec.options.batch = 2;
    spec.options.seq_len = 16;
    spec.options.eval_batches = 1;
    spec.checkpoint_path = (d / "chars-tiny.safetensors").string();
    EXPECT_TRUE(lab::run_training(*store, spec).is_ok());
    ModelConfig c;
    c.d_model = 8;
    c.n_heads = 2;
    c.d_ff = 16;
    c.n_layers = 1;
    Model<float> m = std::move(Model<float>::create(c).value());
    init_parameters(m.layout(), 4, m.params().data());
    EXPECT_TRUE(io::save_model((d / "stack-tiny.safetensors").string(), m).is_ok());
    fs::remove(d / "train.db");
    fs::remove(d / "train.db-wal");
    fs::remove(d / "train.db-shm");
    return d;
  }();
  return dir;
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("blocklab_server_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    start();
  }
  void TearDown() override {
    stop();
    fs::remove_all(dir_);
  }
  void start(Limits limits = {}) {
    ServerOptions o;
    o.port = 0;
    o.db = (dir_ / "runs.db").string();
    o.models_dir = models_dir().string();
    o.uploads_dir = (dir_ / "uploads").string();
    o.web_dir = (dir_ / "no-web").string();
    o.access_log = false;
    o.limits = limits;
    server_ = Server::create(o).value();
    port_ = server_->bind().value();
    thread_ = std::thread([this] { server_->serve(); });
    client_ = std::make_unique<httplib::Client>("127.0.0.1", port_);
    client_->set_read_timeout(60, 0);
  }
  void stop() {
    if (!server_) return;
    server_->stop();
    thread_.join();
    server_.reset();
  }

  // POST/GET, then checks the response against the OpenAPI schema of `path_template`.
  json call(const std::string& method, const std::string& path, const json& body, int expect_status,
            const std::string& path_template = "") {
    httplib::Result r = method == "GET"      ? client_->Get(path)
                        : method == "DELETE" ? client_->Delete(path)
                                             : client_->Post(path, body.dump(), "application/json");
    EXPECT_TRUE(r) << method << " " << path;
    if (!r) return {};
    EXPECT_EQ(r->status, expect_status) << method << " " << path << ": " << r->body.substr(0, 400);
    const json j = json::parse(r->body, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r->body.substr(0, 200);
    std::string m = method;
    std::transform(m.begin(), m.end(), m.begin(), ::tolower);
    const std::string tmpl = path_template.empty() ? path : path_template;
    const json& schema = r->status >= 400 ? openapi().doc()["components"]["schemas"]["Error"]
                                          : openapi().response_schema(tmpl, m, r->status);
    for (const std::string& p : openapi().check(j, schema)) ADD_FAILURE() << method << " " << path << ": " << p;
    if (r->status >= 400) {
      EXPECT_LT(r->status, 500) << r->body;
    }
    return j;
  }
  json post(const std::string& path, const json& body, int status = 200) { return call("POST", path, body, status); }
  // Posts a bad request: a 4xx JSON error whose field is `field`.
  void expect_error(const std::string& path, const json& body, int status, const std::string& field) {
    const json j = post(path, body, status);
    EXPECT_EQ(j["error"]["field"], field.empty() ? json(nullptr) : json(field)) << j.dump();
  }

  fs::path dir_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::unique_ptr<httplib::Client> client_;
};

std::vector<double> flat(const json& nested) {
  std::vector<double> out;
  if (nested.is_array()) {
    for (const json& e : nested) {
      const std::vector<double> inner = flat(e);
      out.insert(out.end(), inner.begin(), inner.end());
    }
  } else {
    out.push_back(nested.is_null() ? NAN : nested.get<double>());
  }
  return out;
}

// ---- Service --------------------------------------------------------------------------------------

TEST_F(ServerTest, ApiAnswersAreNotCompressed) {
  // httplib would pick brotli at its slowest quality; API answers go out as they are.
  httplib::Headers h = {{"Accept-Encoding", "br, gzip"}};
  httplib::Result r = client_->Post("/api/compute/layernorm", h, R"({"x": [[1, 2, 3]]})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_FALSE(r->has_header("Content-Encoding"));
}

TEST_F(ServerTest, HealthAndVersion) {
  const json h = call("GET", "/api/health", nullptr, 200);
  EXPECT_EQ(h["status"], "ok");
  EXPECT_EQ(h["models"], 2);
  const json v = call("GET", "/api/version", nullptr, 200);
  EXPECT_EQ(v["run_store_schema"], lab::RunStore::kSchemaVersion);
}

// ---- Norms ----------------------------------------------------------------------------------------

TEST_F(ServerTest, LayerNormOfTheSeedExample) {
  const json j = post("/api/compute/layernorm", {{"x", {{0.1, 2.3, -1.2}, {5.0, 5.1, 4.9}}}, {"eps", 1e-5}});
  EXPECT_NEAR(j["mean"][0].get<double>(), 0.4, 1e-6);
  EXPECT_NEAR(j["mean"][1].get<double>(), 5.0, 1e-6);
  EXPECT_NEAR(std::sqrt(j["var"][0].get<double>()), 1.4445, 5e-5);  // the seed's sigma (it says 1.5)
  EXPECT_NEAR(std::sqrt(j["var"][1].get<double>()), 0.08165, 5e-6);  // (it says 0.1)
  EXPECT_NEAR(j["std"][0].get<double>(), std::sqrt(2.0866667 + 1e-5), 1e-5);  // sqrt(var + eps)
  // The same numbers as the engine's kernel.
  const std::vector<float> x = {0.1f, 2.3f, -1.2f, 5.0f, 5.1f, 4.9f}, g(3, 1.f), b(3, 0.f);
  std::vector<float> out(6), norm(6), mean(2), rstd(2);
  layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), g.data(), b.data(), 2, 3, 1e-5);
  const std::vector<double> got = flat(j["out"]);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(float(got[i]), out[i]);
  EXPECT_EQ(float(j["rstd"][1].get<double>()), rstd[1]);
  // gamma and beta apply per feature; a single vector is one row.
  const json v = post("/api/compute/layernorm", {{"x", {1.0, 2.0, 3.0}}, {"gamma", {2, 2, 2}}, {"beta", {1, 0, 0}}});
  EXPECT_NEAR(v["out"][0][0].get<double>(), 1 + 2 * v["normalized"][0][0].get<double>(), 1e-6);
}

TEST_F(ServerTest, RmsNorm) {
  const json j = post("/api/compute/rmsnorm", {{"x", {{3.0, 4.0}}}, {"eps", 1e-12}});
  EXPECT_NEAR(j["rms"][0].get<double>(), std::sqrt(12.5), 1e-5);
  EXPECT_NEAR(j["out"][0][1].get<double>(), 4 / std::sqrt(12.5), 1e-6);
}

TEST_F(ServerTest, BatchNormChangesWithTheBatchWhileLayerNormDoesNot) {
  const json a = {{"x", {{0.1, 2.3, -1.2}, {5.0, 5.1, 4.9}, {1.0, 0.0, -1.0}}}};
  json b = a;
  b["x"][2] = {9.0, -3.0, 2.0};  // another token in the batch
  const json bn_a = post("/api/compute/batchnorm", a), bn_b = post("/api/compute/batchnorm", b);
  const json ln_a = post("/api/compute/layernorm", a), ln_b = post("/api/compute/layernorm", b);
  EXPECT_EQ(ln_a["out"][0], ln_b["out"][0]);  // token 0's LayerNorm output: unchanged
  EXPECT_NE(bn_a["out"][0], bn_b["out"][0]);  // its BatchNorm output: changed
  // BatchNorm's mean is per feature over the rows.
  EXPECT_NEAR(bn_a["mean"][0].get<double>(), (0.1 + 5.0 + 1.0) / 3, 1e-6);
  expect_error("/api/compute/batchnorm", {{"x", {{1, 2, 3}}}}, 400, "x");
}

// ---- Residual and FFN ------------------------------------------------------------------------------

TEST_F(ServerTest, ResidualWithAGivenIncrementAndWithAModelsSublayer) {
  const json j = post("/api/compute/residual", {{"x", {{1, 2}}}, {"f", {{10, -10}}}, {"alpha", 0.5}});
  EXPECT_EQ(flat(j["out"]), (std::vector<double>{6, -3}));
  const json off = post("/api/compute/residual", {{"x", {{1, 2}}}, {"f", {{10, -10}}}, {"residual", false}});
  EXPECT_EQ(flat(off["out"]), (std::vector<double>{10, -10}));
  json x = json::array();
  for (int t = 0; t < 3; ++t) {
    json row = json::array();
    for (int k = 0; k < 16; ++k) row.push_back(std::sin(0.3 * (t * 16 + k)));
    x.push_back(row);
  }
  for (const char* kind : {"ffn", "attention"}) {
    const json s = post("/api/compute/residual",
                        {{"x", x}, {"alpha", 0.0}, {"sublayer", {{"model", "chars-tiny"}, {"layer", 1}, {"kind", kind}}}});
    EXPECT_EQ(flat(s["out"]), flat(s["x"])) << kind;  // alpha 0: out = x
    EXPECT_GT(s["norms"][0]["f"].get<double>(), 0) << kind;
  }
  expect_error("/api/compute/residual", {{"x", {{1, 2}}}, {"f", {{1, 2, 3}}}}, 400, "f");
  expect_error("/api/compute/residual", {{"x", {{1, 2}}}}, 400, "f");
  expect_error("/api/compute/residual", {{"x", {{1, 2}}}, {"sublayer", {{"model", "nope"}}}}, 404, "model");
}

TEST_F(ServerTest, FfnOfAModelEqualsTheSameWeightsGivenAndANaiveComputation) {
  const auto lm = server_->models().get("chars-tiny");
  const ModelConfig& c = lm->model.config();
  const BlockOffsets& o = lm->model.layout().block(0);
  const float* P = lm->model.params().data();
  const int64_t d = c.d_model, F = c.d_ff;
  json x = json::array();
  for (int t = 0; t < 2; ++t) {
    json row = json::array();
    for (int k = 0; k < d; ++k) row.push_back(std::cos(0.7 * (t * d + k)));
    x.push_back(row);
  }
  const json j = post("/api/compute/ffn", {{"x", x}, {"model", "chars-tiny"}, {"layer", 0}, {"top_k", 3}});
  EXPECT_EQ(j["d_ff"], F);
  EXPECT_EQ(j["activation"], "gelu");
  // Naive, in double, from the model's tensors.
  for (int t = 0; t < 2; ++t)
    for (int64_t u = 0; u < F; ++u) {
      double pre = P[o.linear1_bias + u];
      for (int64_t k = 0; k < d; ++k) pre += double(P[o.linear1_weight + u * d + k]) * x[t][size_t(k)].get<double>();
      EXPECT_NEAR(j["pre"][t][size_t(u)].get<double>(), pre, 1e-5);
      EXPECT_NEAR(j["act"][t][size_t(u)].get<double>(), 0.5 * pre * (1 + std::erf(pre / std::sqrt(2.0))), 1e-5);
    }
  // The most active units are sorted by activation.
  EXPECT_GE(j["top_units"][0]["units"][0]["act"].get<double>(), j["top_units"][0]["units"][1]["act"].get<double>());
  // The same weights, given explicitly in PyTorch's layout.
  auto rows = [](const float* p, int64_t r, int64_t cols) {
    json m = json::array();
    for (int64_t i = 0; i < r; ++i) m.push_back(std::vector<double>(p + i * cols, p + (i + 1) * cols));
    return m;
  };
  const json given = post("/api/compute/ffn", {{"x", x}, {"w1", rows(P + o.linear1_weight, F, d)},
                                               {"b1", std::vector<double>(P + o.linear1_bias, P + o.linear1_bias + F)},
                                               {"w2", rows(P + o.linear2_weight, d, F)},
                                               {"b2", std::vector<double>(P + o.linear2_bias, P + o.linear2_bias + d)}});
  EXPECT_EQ(given["out"], j["out"]);
  // Fresh weights of another width, deterministic per seed.
  const json wide = post("/api/compute/ffn", {{"x", x}, {"init", {{"d_ff", 64}, {"seed", 5}}}});
  EXPECT_EQ(wide["d_ff"], 64);
  EXPECT_EQ(wide["pre"][0].size(), 64u);
  EXPECT_EQ(post("/api/compute/ffn", {{"x", x}, {"init", {{"d_ff", 64}, {"seed", 5}}}})["out"], wide["out"]);
  EXPECT_NE(post("/api/compute/ffn", {{"x", x}, {"init", {{"d_ff", 64}, {"seed", 6}}}})["out"], wide["out"]);
  expect_error("/api/compute/ffn", {{"x", x}, {"init", {{"d_ff", 64}}}, {"model", "chars-tiny"}}, 400, "model");
  const json relu = post("/api/compute/ffn", {{"x", x}, {"model", "chars-tiny"}, {"activation", "relu"}});
  for (double v : flat(relu["act"])) EXPECT_GE(v, 0.0);
  expect_error("/api/compute/ffn", {{"x", {{1, 2}}}, {"model", "chars-tiny"}}, 400, "x");
  expect_error("/api/compute/ffn", {{"x", x}, {"model", "chars-tiny"}, {"layer", 7}}, 400, "layer");
  expect_error("/api/compute/ffn", {{"x", x}, {"model", "chars-tiny"}, {"activation", "swish"}}, 400, "activation");
  expect_error("/api/compute/ffn", {{"x", x}, {"model", "missing"}}, 404, "model");
}

// ---- Block ---------------------------------------------------------------------------------------

TEST_F(ServerTest, BlockTraceTrackerAndLogitsEqualTheEngine) {
  const json j = post("/api/compute/block", {{"model", "chars-tiny"}, {"text", "Four score"}, {"track", 3}});
  EXPECT_EQ(j["text"], "Four score");
  EXPECT_EQ(j["tokens"].size(), 10u);
  EXPECT_TRUE(j["trace"].contains("blocks.1.mlp.hook_post"));
  EXPECT_TRUE(j["trace"].contains("hook_pos_embed"));
  EXPECT_EQ(j["trace"]["blocks.0.attn.hook_pattern"].size(), 2u);  // [heads, T, T], no batch axis
  // Engine directly: the same logits.
  Model<float> m = io::load_model<float>((models_dir() / "chars-tiny.safetensors").string()).value();
  std::vector<int32_t> tokens;
  for (const json& t : j["tokens"]) tokens.push_back(t.get<int32_t>());
  ASSERT_TRUE(m.forward_lm(tokens.data(), nullptr, 1, int64_t(tokens.size())).is_ok());
  const std::vector<double> logits = flat(j["logits"]);
  ASSERT_EQ(logits.size(), m.logits().data.size());
  for (size_t i = 0; i < logits.size(); ++i) EXPECT_EQ(float(logits[i]), m.logits().data[i]);
  // The tracker follows token 3 through each block: ln1, attention, residual, ln2, ffn, residual.
  const json& tr = j["tracker"];
  ASSERT_EQ(tr.size(), 12u);
  EXPECT_EQ(tr[2]["component"], "residual");
  EXPECT_EQ(tr[2]["after"], j["trace"]["blocks.0.hook_resid_mid"][3]);
  EXPECT_EQ(tr[4]["hidden"]["post"], j["trace"]["blocks.0.mlp.hook_post"][3]);
  EXPECT_EQ(j["predictions"][0]["top"].size(), 5u);
  EXPECT_TRUE(j["predictions"][0]["top"][0].contains("text"));
}

TEST_F(ServerTest, BlockOverridesAndParameterEdits) {
  const json base = post("/api/compute/block", {{"model", "chars-tiny"}, {"tokens", {1, 2, 3}}, {"trace", false}});
  EXPECT_FALSE(base.contains("trace"));
  const json some = post("/api/compute/block", {{"model", "chars-tiny"}, {"tokens", {1, 2, 3}},
                                                {"trace", {"blocks.1.ln1.", "hook_embed"}}});
  EXPECT_EQ(some["trace"].size(), 5u);  // hook_embed, blocks.1.ln1.{hook_mean, hook_rstd, hook_normalized, hook_out}
  EXPECT_TRUE(some["trace"].contains("blocks.1.ln1.hook_normalized"));
  expect_error("/api/compute/block", {{"model", "chars-tiny"}, {"tokens", {1}}, {"trace", {1}}}, 400, "trace[0]");
  const json alpha0 = post("/api/compute/block", {{"model", "chars-tiny"}, {"tokens", {1, 2, 3}}, {"overrides", {{"alpha", 0.0}}}});
  // alpha 0: every block passes its input through.
  EXPECT_EQ(alpha0["trace"]["blocks.1.hook_resid_post"], alpha0["trace"]["blocks.0.hook_resid_pre"]);
  EXPECT_EQ(alpha0["config"]["residual_alpha"], 0.0);
  const json post_ln = post("/api/compute/block", {{"model", "chars-tiny"}, {"tokens", {1, 2, 3}}, {"overrides", {{"placement", "post"}}}});
  EXPECT_TRUE(post_ln["trace"].contains("blocks.0.hook_sum1"));
  EXPECT_EQ(post_ln["tracker"][0]["component"], "attention");
  const json rms = post("/api/compute/block", {{"model", "chars-tiny"}, {"tokens", {1, 2, 3}}, {"overrides", {{"norm", "rmsnorm"}}}});
  EXPECT_FALSE(rms["trace"].contains("blocks.0.ln1.hook_mean"));
  const json edited = post("/api/compute/block", {{"model", "chars-tiny"}, {"tokens", {1, 2, 3}},
                                                  {"param_edits", {{{"name", "layers.0.norm1.weight"}, {"index", 0}, {"value", 3.0}}}}});
  EXPECT_NEAR(edited["trace"]["blocks.0.ln1.hook_out"][0][0].get<double>(),
              3.0 * edited["trace"]["blocks.0.ln1.hook_normalized"][0][0].get<double>() +
                  0.0 * 1 + (edited["trace"]["blocks.0.ln1.hook_out"][0][0].get<double>() -
                             3.0 * edited["trace"]["blocks.0.ln1.hook_normalized"][0][0].get<double>()),
              1e-6);
  EXPECT_NE(edited["logits"], base["logits"]);
  // A block stack (not a language model) takes x.
  const json stack = post("/api/compute/block", {{"model", "stack-tiny"}, {"x", {{1, 0, 0, 0, 0, 0, 0, 1}, {0, 1, 0, 0, 0, 0, 1, 0}}}});
  EXPECT_FALSE(stack.contains("logits"));
  EXPECT_EQ(stack["output"].size(), 2u);
  // Errors name the field.
  expect_error("/api/compute/block", {{"model", "chars-tiny"}, {"tokens", {1, 999}}}, 400, "tokens[1]");
  expect_error("/api/compute/block", {{"model", "chars-tiny"}, {"text", "caf\xc3\xa9"}}, 400, "text[3]");
  expect_error("/api/compute/block", {{"model", "chars-tiny"}, {"tokens", {1}}, {"overrides", {{"colour", 1}}}}, 400, "overrides.colour");
  expect_error("/api/compute/block", {{"model", "chars-tiny"}, {"tokens", {1}}, {"param_edits", {{{"name", "nope"}, {"index", 0}, {"value", 1}}}}},
               400, "param_edits[0].name");
  expect_error("/api/compute/block", {{"model", "chars-tiny"}, {"tokens", std::vector<int>(17, 1)}}, 413, "tokens");
  expect_error("/api/compute/block", {{"model", "stack-tiny"}, {"tokens", {1}}}, 400, "x");
  expect_error("/api/compute/block", {{"tokens", {1}}}, 400, "model");
}

// ---- Gradient flow ---------------------------------------------------------------------------------

TEST_F(ServerTest, GradientFlowIsTheCliMeasurement) {
  const json j = post("/api/gradient-flow", {{"n_layers", 100}, {"d_model", 16}, {"n_heads", 2}, {"d_ff", 32},
                                              {"residual", false}, {"batch", 2}, {"seq_len", 6}, {"seed", 3}});
  ASSERT_EQ(j["layers"].size(), 100u);
  ModelConfig c;
  c.n_layers = 100;
  c.d_model = 16;
  c.n_heads = 2;
  c.d_ff = 32;
  c.residual = false;
  const json direct = lab::to_json(lab::measure_gradient_flow(c, 2, 6, 3).value());
  EXPECT_EQ(j, direct);
  expect_error("/api/gradient-flow", {{"n_layers", 1000}}, 400, "n_layers");
  expect_error("/api/gradient-flow", {{"n_heads", 5}}, 400, "n_heads");
  expect_error("/api/gradient-flow", {{"d_model", 1024}, {"d_ff", 4096}, {"n_layers", 128}, {"batch", 256}, {"seq_len", 512}},
               413, "n_layers");
}

// ---- Errors common to every endpoint ---------------------------------------------------------------

TEST_F(ServerTest, MalformedWrongTypesMissingHugeUnknown) {
  httplib::Result r = client_->Post("/api/compute/layernorm", "{\"x\": [[1, 2]", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "bad_json");
  r = client_->Post("/api/compute/layernorm", "[1, 2]", "application/json");
  EXPECT_EQ(r->status, 400);
  expect_error("/api/compute/layernorm", {{"x", "a matrix"}}, 400, "x");
  expect_error("/api/compute/layernorm", {{"x", {{1, 2}, {3}}}}, 400, "x[1]");
  expect_error("/api/compute/layernorm", {{"x", {{1, 2}}}, {"eps", "small"}}, 400, "eps");
  expect_error("/api/compute/layernorm", {{"x", {{1, 2}}}, {"eps", -1}}, 400, "eps");
  expect_error("/api/compute/layernorm", {{"x", {{1, 2}}}, {"gamma", {1}}}, 400, "gamma");
  expect_error("/api/compute/layernorm", {{"x", {{1, 2}}}, {"row", 5}}, 400, "row");
  expect_error("/api/compute/layernorm", {{"gamma", {1}}}, 400, "x");
  expect_error("/api/compute/layernorm", {{"x", {{1, 2}}}, {"epsilon", 1}}, 400, "epsilon");
  expect_error("/api/compute/layernorm", {{"x", std::vector<std::vector<double>>(1, std::vector<double>(2000, 1.0))}}, 413, "x");
  expect_error("/api/compute/rmsnorm", {{"x", std::vector<std::vector<double>>(600, std::vector<double>(2, 1.0))}}, 413, "x");
  r = client_->Post("/api/compute/layernorm", std::string(9 << 20, ' '), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "too_large");
  const json nf = call("GET", "/api/no/such/thing", nullptr, 404);
  EXPECT_EQ(nf["error"]["code"], "not_found");
  // A known path with another method: 405 naming the methods it takes, in Allow.
  httplib::Result wrong = client_->Get("/api/compute/layernorm");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 405);
  EXPECT_EQ(wrong->get_header_value("Allow"), "POST, OPTIONS");
  EXPECT_EQ(json::parse(wrong->body)["error"]["code"], "method_not_allowed");
}

// ---- Models ----------------------------------------------------------------------------------------

TEST_F(ServerTest, ModelsListGetDownloadUpload) {
  const json list = call("GET", "/api/models", nullptr, 200);
  ASSERT_EQ(list["models"].size(), 2u);
  const json one = call("GET", "/api/models/chars-tiny", nullptr, 200, "/api/models/{id}");
  EXPECT_EQ(one["task"], "chars");
  EXPECT_TRUE(one["alphabet"].is_string());
  call("GET", "/api/models/nope", nullptr, 404);
  httplib::Result r = client_->Get("/api/models/stack-tiny/download");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  std::string bytes = r->body;
  EXPECT_EQ(bytes.size(), fs::file_size(models_dir() / "stack-tiny.safetensors"));
  // Upload a model saved by hand: a new id; the same bytes again: the same id.
  ModelConfig c;
  c.d_model = 8;
  c.n_heads = 4;
  c.d_ff = 8;
  c.n_layers = 1;
  c.norm = Norm::rmsnorm;
  Model<float> m = std::move(Model<float>::create(c).value());
  init_parameters(m.layout(), 9, m.params().data());
  const std::vector<uint8_t> file = io::serialize_safetensors(io::model_to_safetensors(m));
  const std::string up(file.begin(), file.end());
  r = client_->Post("/api/models", up, "application/octet-stream");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  const json info = json::parse(r->body);
  for (const std::string& p : openapi().check(info, openapi().response_schema("/api/models", "post", 201))) ADD_FAILURE() << p;
  EXPECT_EQ(info["source"], "upload");
  EXPECT_EQ(info["config"]["norm"], "rmsnorm");
  EXPECT_EQ(info["delete_token"].get<std::string>().size(), 48u);
  r = client_->Post("/api/models", up, "application/octet-stream");
  EXPECT_EQ(r->status, 200);  // the same bytes: the model already there, and no new token
  EXPECT_EQ(json::parse(r->body)["id"], info["id"]);
  EXPECT_FALSE(json::parse(r->body).contains("delete_token"));
  EXPECT_EQ(call("GET", "/api/models", nullptr, 200)["models"].size(), 3u);
  // The upload computes like any model.
  post("/api/compute/block", {{"model", info["id"]}, {"x", {{1, 2, 3, 4, 5, 6, 7, 8}}}});
  // Garbage is refused with the loader's message, and nothing is saved.
  r = client_->Post("/api/models", "not a model", "application/octet-stream");
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(json::parse(r->body)["error"]["message"].get<std::string>().find("header length"), std::string::npos);
  bytes[bytes.size() - 1] ^= 0;  // unchanged, then truncated:
  r = client_->Post("/api/models", bytes.substr(0, bytes.size() - 10), "application/octet-stream");
  EXPECT_EQ(r->status, 400);
  size_t uploads = 0, others = 0;
  for (const auto& e : fs::directory_iterator(dir_ / "uploads"))
    ++(e.path().extension() == ".safetensors" ? uploads : others);
  EXPECT_EQ(uploads, 1u);
  EXPECT_EQ(others, 1u);  // its delete token's hash, and no partial body
  // Only the uploader (who holds the token) deletes it; a builtin model is never deleted.
  const std::string id = info["id"];
  EXPECT_EQ(client_->Delete("/api/models/" + id, {{"X-Delete-Token", "0123"}})->status, 403);
  EXPECT_EQ(client_->Delete("/api/models/" + id)->status, 403);
  EXPECT_EQ(client_->Delete("/api/models/stack-tiny", {{"X-Delete-Token", info["delete_token"].get<std::string>()}})->status, 403);
  EXPECT_EQ(client_->Delete("/api/models/" + id, {{"X-Delete-Token", info["delete_token"].get<std::string>()}})->status, 204);
  EXPECT_EQ(call("GET", "/api/models", nullptr, 200)["models"].size(), 2u);
  EXPECT_TRUE(fs::is_empty(dir_ / "uploads"));
  EXPECT_EQ(client_->Delete("/api/models/" + id)->status, 404);
}

TEST_F(ServerTest, UploadsHaveAQuotaAndASizeLimit) {
  stop();
  Limits limits;
  limits.max_uploads = 2;
  limits.max_upload_bytes = 4000;
  start(limits);
  auto model_bytes = [](uint64_t seed, int64_t d) {
    ModelConfig c;
    c.d_model = d;
    c.n_heads = 2;
    c.d_ff = 8;
    c.n_layers = 1;
    Model<float> m = std::move(Model<float>::create(c).value());
    init_parameters(m.layout(), seed, m.params().data());
    const std::vector<uint8_t> file = io::serialize_safetensors(io::model_to_safetensors(m));
    return std::string(file.begin(), file.end());
  };
  EXPECT_EQ(client_->Post("/api/models", model_bytes(1, 4), "application/octet-stream")->status, 201);
  EXPECT_EQ(client_->Post("/api/models", model_bytes(2, 4), "application/octet-stream")->status, 201);
  httplib::Result r = client_->Post("/api/models", model_bytes(3, 4), "application/octet-stream");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 507) << r->body;
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "upload_quota");
  r = client_->Post("/api/models", model_bytes(4, 32), "application/octet-stream");  // over 4000 bytes
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413) << r->body;
  // An upload must say what it is: a form post or text is not a model file.
  r = client_->Post("/api/models", model_bytes(5, 4), "application/x-www-form-urlencoded");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 415);
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_ / "uploads")) ++files;
  EXPECT_EQ(files, 4u);  // two models and their tokens' hashes; nothing of the refused ones
}

// ---- Training jobs ---------------------------------------------------------------------------------

// Reads a run's SSE stream until its "end" event (or `max_steps` step events, then stops reading).
struct SseRead {
  int steps = 0;
  std::string end;
};
SseRead read_events(int port, int64_t id, int max_steps = 1 << 30) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60, 0);
  SseRead out;
  std::string buffer;
  c.Get("/api/runs/" + std::to_string(id) + "/events", [&](const char* data, size_t n) {
    buffer.append(data, n);
    size_t pos;
    while ((pos = buffer.find("\n\n")) != std::string::npos) {
      const std::string event = buffer.substr(0, pos);
      buffer.erase(0, pos + 2);
      if (event.rfind("event: step", 0) == 0) ++out.steps;
      if (event.rfind("event: end", 0) == 0) {
        out.end = event.substr(event.find("data: ") + 6);
        return false;
      }
      if (out.steps >= max_steps) return false;
    }
    return true;
  });
  return out;
}

TEST_F(ServerTest, TwoJobsStreamAndCancellingOneLeavesTheOtherRunning) {
  const json small = {{"d_model", 16}, {"n_heads", 2}, {"d_ff", 32}, {"n_layers", 1}};
  const json a = call("POST", "/api/runs", {{"task", "copy"}, {"steps", 40}, {"batch", 4}, {"seq_len", 8}, {"config", small}, {"label", "keeps going"}, {"precision", "bf16"}}, 202);
  const json b = call("POST", "/api/runs", {{"task", "copy"}, {"steps", 1000000 / 100}, {"batch", 4}, {"seq_len", 8}, {"config", small}}, 202);
  const int64_t ia = a["run_id"], ib = b["run_id"];
  SseRead ra, rb_partial;
  std::thread ta([&] { ra = read_events(port_, ia); });
  rb_partial = read_events(port_, ib, 3);  // b is streaming too
  EXPECT_EQ(rb_partial.steps, 3);
  const json cancel = call("DELETE", "/api/runs/" + std::to_string(ib), nullptr, 202, "/api/runs/{id}");
  EXPECT_EQ(cancel["status"], "cancelling");
  const SseRead rb = read_events(port_, ib);
  EXPECT_EQ(json::parse(rb.end)["status"], "cancelled");
  ta.join();
  EXPECT_EQ(ra.steps, 40);
  EXPECT_EQ(json::parse(ra.end)["status"], "finished");
  const json detail = call("GET", "/api/runs/" + std::to_string(ia), nullptr, 200, "/api/runs/{id}");
  EXPECT_EQ(detail["status"], "finished");
  EXPECT_EQ(detail["history"].size(), 40u);
  EXPECT_EQ(detail["options"]["precision"], "bf16");  // the first job trained with bf16 matmuls
  EXPECT_EQ(detail["label"], "keeps going");
  EXPECT_EQ(call("GET", "/api/runs/" + std::to_string(ib), nullptr, 200, "/api/runs/{id}")["status"], "cancelled");
  // Export and model download.
  httplib::Result csv = client_->Get("/api/runs/" + std::to_string(ia) + "/export?format=csv");
  EXPECT_EQ(csv->body.rfind("step,loss,accuracy", 0), 0u);
  EXPECT_EQ(client_->Get("/api/runs/" + std::to_string(ia) + "/model")->status, 200);
  // A restarted server still lists the finished runs, and replays their events.
  stop();
  start();
  const json runs = call("GET", "/api/runs", nullptr, 200);
  ASSERT_EQ(runs["runs"].size(), 2u);
  EXPECT_EQ(runs["runs"][0]["status"], "finished");
  const SseRead replay = read_events(port_, ia);
  EXPECT_EQ(replay.steps, 40);
  EXPECT_EQ(json::parse(replay.end)["status"], "finished");
  EXPECT_EQ(call("DELETE", "/api/runs/" + std::to_string(ia), nullptr, 200, "/api/runs/{id}")["status"], "finished");
}

TEST_F(ServerTest, AFullQueueAnswers429AndBadRunsAreRefused) {
  stop();
  Limits limits;
  limits.max_running_jobs = 1;
  limits.max_queued_jobs = 1;
  limits.max_jobs_anonymous = 8;
  start(limits);
  const json small = {{"d_model", 16}, {"n_heads", 2}, {"d_ff", 32}, {"n_layers", 1}};
  const json job = {{"steps", 5000}, {"batch", 4}, {"seq_len", 8}, {"config", small}};
  const int64_t first = call("POST", "/api/runs", job, 202)["run_id"];
  // Wait until it runs, so the next one is the only one queued.
  for (int i = 0; i < 200 && call("GET", "/api/health", nullptr, 200)["jobs"]["running"] != 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const int64_t second = call("POST", "/api/runs", job, 202)["run_id"];
  const json full = call("POST", "/api/runs", job, 429);
  EXPECT_EQ(full["error"]["code"], "queue_full");
  // A queued job is cancelled at once.
  EXPECT_EQ(call("DELETE", "/api/runs/" + std::to_string(second), nullptr, 200, "/api/runs/{id}")["status"], "cancelled");
  EXPECT_EQ(call("GET", "/api/runs/" + std::to_string(second), nullptr, 200, "/api/runs/{id}")["status"], "cancelled");
  call("DELETE", "/api/runs/" + std::to_string(first), nullptr, 202, "/api/runs/{id}");
  stop();
  limits.max_jobs_anonymous = 1;  // one job at a time from an address without a session
  limits.max_queued_jobs = 8;
  start(limits);
  const int64_t mine = call("POST", "/api/runs", job, 202)["run_id"];
  EXPECT_EQ(call("POST", "/api/runs", job, 429)["error"]["code"], "too_many_jobs");
  for (int i = 0; i < 500 && call("GET", "/api/health", nullptr, 200)["jobs"]["running"] != 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  call("DELETE", "/api/runs/" + std::to_string(mine), nullptr, 202, "/api/runs/{id}");
  for (int i = 0; i < 500 && call("GET", "/api/health", nullptr, 200)["jobs"]["running"] != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const int64_t next = call("POST", "/api/runs", job, 202)["run_id"];  // its slot is free again
  httplib::Result d = client_->Delete("/api/runs/" + std::to_string(next));  // queued (200) or running (202)
  EXPECT_TRUE(d && (d->status == 200 || d->status == 202)) << (d ? d->body : "no answer");
  // Bad requests.
  expect_error("/api/runs", {{"task", "translate"}}, 400, "task");
  expect_error("/api/runs", {{"steps", 0}}, 400, "steps");
  expect_error("/api/runs", {{"precision", "fp8"}}, 400, "precision");
  expect_error("/api/runs", {{"config", {{"n_heads", 3}}}}, 400, "config.n_heads");
  expect_error("/api/runs", {{"task", "chars"}, {"config", {{"causal", false}}}}, 400, "config");
  expect_error("/api/runs", {{"steps", 20000}, {"batch", 256}, {"seq_len", 512}, {"config", {{"d_model", 1024}, {"d_ff", 4096}, {"n_layers", 128}, {"n_heads", 8}}}},
               413, "steps");
  call("GET", "/api/runs/999", nullptr, 404, "/api/runs/{id}");
  call("GET", "/api/runs/abc", nullptr, 400, "/api/runs/{id}");
}

// A server killed with jobs still queued (the store says "queued"): the next one queues them again
// under their ids, runs them, and can cancel them.
TEST_F(ServerTest, RunsLeftQueuedByAKilledServerAreQueuedAgainAtStart) {
  stop();
  {
    auto store = lab::RunStore::open((dir_ / "runs.db").string()).value();
    lab::TrainRunSpec spec;
    spec.config.d_model = 16;
    spec.config.n_heads = 2;
    spec.config.d_ff = 32;
    spec.config.n_layers = 1;
    spec.options.steps = 6;
    spec.options.batch = 4;
    spec.options.seq_len = 8;
    spec.config = lab::training_config(spec.config, spec.options).value();
    lab::RunRecord queued = lab::run_record(spec, "queued");
    queued.kind = "job";  // as the server queues them
    ASSERT_EQ(store->create_run(queued).value(), 1);
    spec.options.steps = 100000;
    queued = lab::run_record(spec, "queued");
    queued.kind = "job";
    ASSERT_EQ(store->create_run(queued).value(), 2);
  }
  Limits limits;
  limits.max_running_jobs = 1;
  start(limits);
  const SseRead first = read_events(port_, 1);
  EXPECT_EQ(first.steps, 6);
  EXPECT_EQ(json::parse(first.end)["status"], "finished");
  for (int i = 0; i < 500 && call("GET", "/api/runs/2", nullptr, 200, "/api/runs/{id}")["status"] != "running"; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(call("DELETE", "/api/runs/2", nullptr, 202, "/api/runs/{id}")["status"], "cancelling");
  const SseRead second = read_events(port_, 2);
  EXPECT_EQ(json::parse(second.end)["status"], "cancelled");
}

}  // namespace
}  // namespace blocklab::server
