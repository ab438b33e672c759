// The blocklab binary, run as a user runs it: init -> forward -> backward, PyTorch fixtures through
// the CLI, and every bad input: exit 2, one line on stderr, no output file.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli_fixture.h"
#include "io/model_file.h"
#include "io/safetensors.h"

namespace blocklab {
namespace {

namespace fs = std::filesystem;
using testing::Cli;
using testing::CliRun;
using testing::read;


// ---- Working paths -----------------------------------------------------------------------------

TEST_F(Cli, HelpForEveryCommandExitsZero) {
  for (const char* sub : {"", "forward ", "backward ", "init ", "train ", "runs ", "runs list ", "gradflow ", "bench ", "export "}) {
    const CliRun r = run(std::string(sub) + "--help");
    EXPECT_EQ(r.code, 0) << sub;
    EXPECT_NE(r.out.find("Usage: blocklab"), std::string::npos) << sub;
  }
}

TEST_F(Cli, InitForwardBackward) {
  const std::string m = make_model();
  const io::SafetensorsFile model = read(m);
  EXPECT_NE(model.metadata.at("blocklab.config").find("\"d_model\":8"), std::string::npos);
  const std::string in = make_input({2, 5, 8}, true);
  const std::string y = path("y.safetensors");
  CliRun r = run("forward --model " + m + " --input " + in + " --output " + y + " --trace");
  ASSERT_EQ(r.code, 0) << r.err;
  const io::SafetensorsFile fy = read(y);
  EXPECT_EQ(fy.find("y")->shape, (Shape{2, 5, 8}));
  EXPECT_EQ(fy.find("blocks.1.attn.hook_pattern")->shape, (Shape{2, 2, 5, 5}));
  EXPECT_EQ(fy.find("blocks.0.ln2.hook_mean")->shape, (Shape{2, 5}));
  EXPECT_EQ(fy.find("y")->dtype, io::DType::F32);
  // y is the last block's output
  EXPECT_EQ(fy.find("y")->bytes, fy.find("blocks.1.hook_resid_post")->bytes);

  const std::string g = path("g.safetensors");
  r = run("backward --model " + m + " --input " + in + " --output " + g);
  ASSERT_EQ(r.code, 0) << r.err;
  const io::SafetensorsFile fg = read(g);
  EXPECT_EQ(fg.find("grad.x")->shape, (Shape{2, 5, 8}));
  for (const io::StoredTensor& p : model.tensors) {
    const io::StoredTensor* grad = fg.find("grad." + p.name);
    ASSERT_NE(grad, nullptr) << p.name;
    EXPECT_EQ(grad->shape, p.shape);
  }
}

TEST_F(Cli, UnbatchedInputGivesUnbatchedOutputs) {
  const std::string m = make_model();
  const std::string in = make_input({5, 8});
  const std::string y = path("y.safetensors");
  const CliRun r = run("forward --model " + m + " --input " + in + " --output " + y + " --trace");
  ASSERT_EQ(r.code, 0) << r.err;
  const io::SafetensorsFile fy = read(y);
  EXPECT_EQ(fy.find("y")->shape, (Shape{5, 8}));
  EXPECT_EQ(fy.find("blocks.0.attn.hook_pattern")->shape, (Shape{2, 5, 5}));
  EXPECT_EQ(fy.find("blocks.0.ln1.hook_rstd")->shape, (Shape{5}));
}

TEST_F(Cli, InitIsDeterministicPerSeed) {
  const std::string a = path("a.safetensors"), b = path("b.safetensors"), c = path("c.safetensors");
  ASSERT_EQ(run("init --n-layers 1 --seed 5 --output " + a).code, 0);
  ASSERT_EQ(run("init --n-layers 1 --seed 5 --output " + b).code, 0);
  ASSERT_EQ(run("init --n-layers 1 --seed 6 --output " + c).code, 0);
  EXPECT_EQ(slurp(a), slurp(b));
  EXPECT_NE(slurp(a), slurp(c));
}

TEST_F(Cli, ConfigFileWithFlagsWinning) {
  const std::string cfg = path("c.json");
  std::ofstream(cfg) << R"({"d_model": 16, "n_heads": 2, "norm": "rmsnorm", "n_layers": 3})";
  const std::string m = path("m.safetensors");
  ASSERT_EQ(run("init --config " + cfg + " --n-layers 1 --placement post --output " + m).code, 0);
  const std::string text = read(m).metadata.at("blocklab.config");
  EXPECT_NE(text.find("\"n_layers\":1"), std::string::npos);
  EXPECT_NE(text.find("\"norm\":\"rmsnorm\""), std::string::npos);
  EXPECT_NE(text.find("\"placement\":\"post\""), std::string::npos);
}

TEST_F(Cli, LanguageModelOnTokens) {
  const std::string m = make_model("--d-model 8 --n-heads 2 --d-ff 16 --n-layers 1 --vocab-size 6 --final-norm on");
  io::SafetensorsFile in;
  in.add(io::from_int_ids("tokens", {2, 3}, {0, 1, 2, 3, 4, 5}));
  in.add(io::from_int_ids("targets", {2, 3}, {1, 2, 3, 4, 5, 0}));
  ASSERT_TRUE(io::write_safetensors(path("t.safetensors"), in).is_ok());
  CliRun r = run("forward --model " + m + " --input " + path("t.safetensors") + " --output " + path("y.safetensors") +
              " --trace");
  ASSERT_EQ(r.code, 0) << r.err;
  const io::SafetensorsFile fy = read(path("y.safetensors"));
  EXPECT_EQ(fy.find("logits")->shape, (Shape{2, 3, 6}));
  EXPECT_NE(fy.find("hook_embed"), nullptr);
  r = run("backward --model " + m + " --input " + path("t.safetensors") + " --output " + path("g.safetensors"));
  ASSERT_EQ(r.code, 0) << r.err;
  const io::SafetensorsFile fg = read(path("g.safetensors"));
  const float loss = io::to_float_tensor<float>(*fg.find("loss"), "g")->data[0];
  EXPECT_GT(loss, 0.5f);
  EXPECT_LT(loss, 5.0f);
  EXPECT_EQ(fg.find("grad.embed.weight")->shape, (Shape{6, 8}));
}

// PyTorch's own nn.TransformerEncoder, through the command line, in float32.
TEST_F(Cli, MatchesPyTorchTransformerEncoderFixtures) {
  const std::string dir = std::string(BLOCKLAB_SOURCE_DIR) + "/tests/fixtures/parity/";
  for (const char* name : {"torch_encoder_pre_gelu_causal", "torch_encoder_post_relu_full"}) {
    const std::string m = dir + name + ".model.safetensors", in = dir + name + ".io.safetensors";
    ASSERT_EQ(run("forward --model " + m + " --input " + in + " --output " + path("y.safetensors")).code, 0);
    ASSERT_EQ(run("backward --model " + m + " --input " + in + " --output " + path("g.safetensors")).code, 0);
    const io::SafetensorsFile want = read(in), fy = read(path("y.safetensors")), fg = read(path("g.safetensors"));
    auto values = [](const io::SafetensorsFile& f, const std::string& n) {
      return io::to_float_tensor<double>(*f.find(n), "f").value().data;
    };
    const auto y = values(fy, "y"), y_ref = values(want, "y");
    for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], y_ref[i], 1e-4) << name;
    for (const io::StoredTensor& t : fg.tensors) {
      const auto g = values(fg, t.name), g_ref = values(want, t.name);
      double scale = 0, diff = 0;
      for (size_t i = 0; i < g.size(); ++i) {
        scale = std::max(scale, std::abs(g_ref[i]));
        diff = std::max(diff, std::abs(g[i] - g_ref[i]));
      }
      EXPECT_LE(diff, 1e-3 * scale) << name << " " << t.name;
    }
  }
}

// A GPT-2 checkpoint folder (tools/make_gpt2_fixtures.py) through forward --trace and backward, against PyTorch.
TEST_F(Cli, Gpt2FolderForwardAndBackward) {
  const std::string folder = std::string(BLOCKLAB_SOURCE_DIR) + "/tests/fixtures/gpt2/prefixed";
  const io::SafetensorsFile want = read(folder + "/expected.safetensors");
  io::SafetensorsFile in;
  in.add(*want.find("tokens"));
  in.add(*want.find("targets"));
  ASSERT_TRUE(io::write_safetensors(path("t.safetensors"), in).is_ok());
  CliRun r = run("forward --model " + folder + " --input " + path("t.safetensors") + " --output " + path("y.safetensors") + " --trace");
  ASSERT_EQ(r.code, 0) << r.err;
  const io::SafetensorsFile fy = read(path("y.safetensors"));
  auto values = [](const io::SafetensorsFile& f, const std::string& n) {
    const io::StoredTensor* t = f.find(n);
    EXPECT_NE(t, nullptr) << n;
    return t ? io::to_float_tensor<double>(*t, "f").value().data : std::vector<double>{};
  };
  const auto logits = values(fy, "logits"), logits_ref = values(want, "logits");
  ASSERT_EQ(logits.size(), logits_ref.size());
  for (size_t i = 0; i < logits.size(); ++i) EXPECT_NEAR(logits[i], logits_ref[i], 1e-4 * std::max(1.0, std::abs(logits_ref[i])));
  for (const char* name : {"hook_embed", "hook_pos_embed", "blocks.2.attn.hook_pattern", "ln_final.hook_out"}) {
    const auto got = values(fy, name), ref = values(want, std::string("trace.") + name);
    ASSERT_EQ(got.size(), ref.size()) << name;
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], ref[i], 1e-4 * std::max(1.0, std::abs(ref[i]))) << name;
  }
  r = run("backward --model " + folder + " --input " + path("t.safetensors") + " --output " + path("g.safetensors") +
          " --wrt blocks.1.hook_resid_mid");
  ASSERT_EQ(r.code, 0) << r.err;
  const io::SafetensorsFile fg = read(path("g.safetensors"));
  EXPECT_NEAR(values(fg, "loss")[0], values(want, "loss")[0], 1e-4);
  EXPECT_EQ(fg.find("grad.head.weight"), nullptr);  // tied: the head's gradient is in grad.embed.weight
  for (const char* name : {"grad.embed.weight", "grad.layers.0.self_attn.in_proj_weight", "grad.blocks.1.hook_resid_mid"}) {
    const auto g = values(fg, name), g_ref = values(want, name);
    ASSERT_EQ(g.size(), g_ref.size()) << name;
    double scale = 0, diff = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      scale = std::max(scale, std::abs(g_ref[i]));
      diff = std::max(diff, std::abs(g[i] - g_ref[i]));
    }
    EXPECT_LE(diff, 1e-3 * scale) << name;
  }
  // What the folder cannot be: a --config beside it, or one without its weights.
  const std::string out = path("o.safetensors");
  std::ofstream(path("c.json")) << "{\"activation\": \"gelu\", \"placement\": \"pre\"}";
  expect_usage_error(run("forward --model " + folder + " --input " + path("t.safetensors") + " --output " + out + " --config " +
                         path("c.json")),
                     folder + ": a GPT-2 folder's config is its config.json: expected no --config, got one", out);
  fs::create_directories(path("empty"));
  fs::copy_file(folder + "/config.json", path("empty/config.json"));
  expect_usage_error(run("forward --model " + path("empty") + " --input " + path("t.safetensors") + " --output " + out),
                     path("empty") + ": no model.safetensors: expected the weights as one safetensors file", out);
}

// ---- Bad input: exit 2, one line, no file --------------------------------------------------------

TEST_F(Cli, NonExistentPaths) {
  const std::string m = make_model(), in = make_input({2, 3, 8}), out = path("out.safetensors");
  expect_usage_error(run("forward --model " + path("nope.safetensors") + " --input " + in + " --output " + out),
                     "nope.safetensors: cannot open: No such file or directory", out);
  expect_usage_error(run("forward --model " + m + " --input " + path("nope.safetensors") + " --output " + out),
                     "nope.safetensors: cannot open", out);
  expect_usage_error(run("init --config " + path("nope.json") + " --output " + out), "nope.json", out);
}

// A path to something without an end is refused before it is read (it would be read forever, into memory).
TEST_F(Cli, DevicesAndFoldersAreNotReadAsFiles) {
  const std::string m = make_model(), in = make_input({2, 3, 8}), out = path("o.safetensors");
  expect_usage_error(run("forward --model /dev/zero --input " + in + " --output " + out), "/dev/zero: expected a regular file, got a device", out);
  expect_usage_error(run("forward --model " + m + " --input /dev/zero --output " + out), "/dev/zero: expected a regular file", out);
  expect_usage_error(run("forward --model " + m + " --input " + in + " --output " + out + " --config /dev/zero"),
                     "/dev/zero: expected a regular file", out);
  expect_usage_error(run("forward --model " + m + " --input " + in + " --output " + out + " --hook-patch blocks.0.hook_resid_mid=/dev/zero"),
                     "/dev/zero: expected a regular file", out);
  // A folder is a GPT-2 checkpoint's (docs/gpt2.md); this one is not.
  expect_usage_error(run("forward --model " + dir_.string() + " --input " + in + " --output " + out),
                     dir_.string() + ": a folder without config.json: expected a model file, or a GPT-2 folder", out);
  expect_usage_error(run("forward --model " + m + " --input " + dir_.string() + " --output " + out), "expected a regular file, got a directory", out);
}

TEST_F(Cli, OutputIntoAMissingFolder) {
  const std::string m = make_model(), in = make_input({2, 3, 8});
  expect_usage_error(run("forward --model " + m + " --input " + in + " --output " + path("no/such/y.safetensors")),
                     "cannot write");
}

TEST_F(Cli, TruncatedModelFile) {
  const std::string m = make_model(), in = make_input({2, 3, 8}), out = path("out.safetensors");
  const std::string bytes = slurp(m);
  std::ofstream(path("short.safetensors"), std::ios::binary) << bytes.substr(0, bytes.size() - 100);
  expect_usage_error(run("forward --model " + path("short.safetensors") + " --input " + in + " --output " + out),
                     "outside the data section", out);
  std::ofstream(path("tiny.safetensors"), std::ios::binary) << bytes.substr(0, 5);
  expect_usage_error(run("forward --model " + path("tiny.safetensors") + " --input " + in + " --output " + out),
                     "truncated: expected at least 8 bytes", out);
}

TEST_F(Cli, HeaderLengthPastTheEnd) {
  const std::string m = make_model(), in = make_input({2, 3, 8}), out = path("out.safetensors");
  std::string bytes = slurp(m);
  const uint64_t huge = 1ull << 40;
  std::memcpy(bytes.data(), &huge, 8);
  std::ofstream(path("bad.safetensors"), std::ios::binary) << bytes;
  expect_usage_error(run("forward --model " + path("bad.safetensors") + " --input " + in + " --output " + out),
                     "runs past the end of the file", out);
}

// Rewrites the model file through `edit` (on its parsed form) and expects forward to refuse it.
void edit_model(const std::string& in_path, const std::string& out_path,
                const std::function<void(io::SafetensorsFile&)>& edit) {
  io::SafetensorsFile f = io::read_safetensors(in_path).value();
  edit(f);
  ASSERT_TRUE(io::write_safetensors(out_path, f).is_ok());
}

TEST_F(Cli, OffsetsOutsideTheData) {
  const std::string m = make_model(), in = make_input({2, 3, 8}), out = path("out.safetensors");
  // A header that claims one more element for the last tensor than the file holds.
  io::SafetensorsFile f = io::read_safetensors(m).value();
  std::vector<uint8_t> bytes = io::serialize_safetensors(f);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  std::string header(bytes.begin() + 8, bytes.begin() + 8 + std::ptrdiff_t(n));
  nlohmann::json h = nlohmann::json::parse(header);
  auto& last = h["layers.1.norm2.bias"]["data_offsets"];
  last[1] = last[1].get<uint64_t>() + 4;
  h["layers.1.norm2.bias"]["shape"] = {9};
  std::string text = h.dump();
  std::vector<uint8_t> out_bytes(8);
  n = text.size();
  std::memcpy(out_bytes.data(), &n, 8);
  out_bytes.insert(out_bytes.end(), text.begin(), text.end());
  out_bytes.insert(out_bytes.end(), bytes.begin() + 8 + std::ptrdiff_t(header.size()), bytes.end());
  std::ofstream(path("bad.safetensors"), std::ios::binary).write(reinterpret_cast<const char*>(out_bytes.data()),
                                                                 std::streamsize(out_bytes.size()));
  expect_usage_error(run("forward --model " + path("bad.safetensors") + " --input " + in + " --output " + out),
                     "tensor 'layers.1.norm2.bias': data_offsets", out);
}

TEST_F(Cli, WrongShapeMissingTensorAndConfigErrors) {
  const std::string m = make_model(), in = make_input({2, 3, 8}), out = path("out.safetensors"),
                    bad = path("bad.safetensors");
  auto expect_refused = [&](const std::function<void(io::SafetensorsFile&)>& edit, const std::string& needle) {
    edit_model(m, bad, edit);
    expect_usage_error(run("forward --model " + bad + " --input " + in + " --output " + out), needle, out);
  };
  expect_refused(
      [](io::SafetensorsFile& f) {
        for (auto& t : f.tensors)
          if (t.name == "layers.0.linear2.weight") t = io::from_float_tensor(t.name, Tensor<float>({16, 8}), io::DType::F32);
      },
      "tensor 'layers.0.linear2.weight': expected shape [8, 16], got [16, 8]");
  expect_refused([](io::SafetensorsFile& f) { f.tensors.pop_back(); },
                 "missing tensor 'layers.1.norm2.bias': expected shape [8]");
  expect_refused(
      [](io::SafetensorsFile& f) {
        f.metadata["blocklab.config"] = R"({"d_model": 8, "n_heads": 2, "d_ff": 16, "layers": 2})";
      },
      "unknown key 'layers'");
  expect_refused(
      [](io::SafetensorsFile& f) {
        f.metadata["blocklab.config"] = R"({"d_model": 8, "n_heads": 2, "d_ff": 16, "activation": "swish"})";
      },
      "config key 'activation': expected one of \"relu\" \"gelu\" \"gelu_tanh\", got \"swish\"");
}

TEST_F(Cli, InputWidthDifferentFromDModel) {
  const std::string m = make_model(), in = make_input({2, 3, 7}), out = path("out.safetensors");
  expect_usage_error(run("forward --model " + m + " --input " + in + " --output " + out),
                     "tensor 'x': expected last dimension d_model = 8, got [2, 3, 7]", out);
  expect_usage_error(run("backward --model " + m + " --input " + in + " --output " + out),
                     "expected last dimension d_model = 8", out);
}

TEST_F(Cli, InputProblems) {
  const std::string m = make_model(), out = path("out.safetensors");
  io::SafetensorsFile f;
  f.add(io::from_float_tensor("X", Tensor<float>({2, 8}), io::DType::F32));
  ASSERT_TRUE(io::write_safetensors(path("noX.safetensors"), f).is_ok());
  expect_usage_error(run("forward --model " + m + " --input " + path("noX.safetensors") + " --output " + out),
                     "missing tensor 'x'", out);
  const std::string in = make_input({2, 3, 8});  // no dy
  expect_usage_error(run("backward --model " + m + " --input " + in + " --output " + out), "missing tensor 'dy'", out);
  io::SafetensorsFile g;
  g.add(io::from_float_tensor("x", Tensor<float>({2, 3, 8}), io::DType::F32));
  g.add(io::from_float_tensor("dy", Tensor<float>({2, 4, 8}), io::DType::F32));
  ASSERT_TRUE(io::write_safetensors(path("dy.safetensors"), g).is_ok());
  expect_usage_error(run("backward --model " + m + " --input " + path("dy.safetensors") + " --output " + out),
                     "tensor 'dy': expected shape [2, 3, 8], got [2, 4, 8]", out);
  io::SafetensorsFile e;
  e.add(io::from_float_tensor("x", Tensor<float>({0, 8}), io::DType::F32));
  ASSERT_TRUE(io::write_safetensors(path("empty.safetensors"), e).is_ok());
  expect_usage_error(run("forward --model " + m + " --input " + path("empty.safetensors") + " --output " + out),
                     "expected at least one token", out);
}

TEST_F(Cli, TokensOutsideTheVocabulary) {
  const std::string m = make_model("--d-model 8 --n-heads 2 --d-ff 16 --n-layers 1 --vocab-size 6");
  io::SafetensorsFile in;
  in.add(io::from_int_ids("tokens", {3}, {0, 6, 1}));
  ASSERT_TRUE(io::write_safetensors(path("t.safetensors"), in).is_ok());
  const std::string out = path("out.safetensors");
  expect_usage_error(run("forward --model " + m + " --input " + path("t.safetensors") + " --output " + out),
                     "tokens[1]: expected an id in 0..5, got 6", out);
}

TEST_F(Cli, BadFlagsAndImpossibleConfigs) {
  const std::string out = path("m.safetensors");
  expect_usage_error(run("init --n-heads 5 --output " + out), "config key 'n_heads': expected a divisor of d_model 64, got 5",
                     out);
  expect_usage_error(run("init --norm batchnorm --output " + out), "--norm", out);
  expect_usage_error(run("init --norm none --final-norm on --output " + out), "final_norm", out);
  expect_usage_error(run("init --d-model sixty --output " + out), "--d-model", out);
  expect_usage_error(run("init --colour red --output " + out), "--colour", out);
  expect_usage_error(run("init"), "--output");
  expect_usage_error(run("forward --model m"), "--input");
  expect_usage_error(run("frobnicate"), "unknown command 'frobnicate': expected one of forward backward init tokenize train runs export gradflow experiment serve users worker workers assistant bench");
  expect_usage_error(run(""), "subcommand");
  expect_usage_error(run("bench --threads 0"), "--threads");
}

// Issue 11: hostile model and config files give status 2 and one line, never an abort.
TEST_F(Cli, HostileFilesAreOneLineAndStatusTwo) {
  const std::string m = make_model(), in = make_input({2, 3, 8}), out = path("out.safetensors");
  auto write_bytes = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(path(name), std::ios::binary) << bytes;
    return path(name);
  };
  auto with_header = [&](const std::string& name, const std::string& header, size_t data) {
    std::string bytes(8, '\0');
    const uint64_t n = header.size();
    std::memcpy(bytes.data(), &n, 8);
    return write_bytes(name, bytes + header + std::string(data, '\0'));
  };
  auto forward = [&](const std::string& model) { return run("forward --model " + model + " --input " + in + " --output " + out); };
  const std::string meta = R"("__metadata__": {"blocklab.config": "{\"d_model\": 8, \"n_heads\": 2, \"d_ff\": 16}"})";

  expect_usage_error(forward(write_bytes("zip.pt", std::string("PK\x03\x04", 4) + std::string(700, 'x'))),
                     "not a safetensors file: it is a zip archive, as torch.save writes (a PyTorch pickle/zip)", out);
  expect_usage_error(forward(write_bytes("old.pt", std::string("\x80\x02\x8a\x0alz\xfc\x9c", 8) + std::string(200, 'x'))),
                     "not a safetensors file: it is a Python pickle (protocol 2)", out);
  expect_usage_error(forward(write_bytes("config.json", R"({"d_model": 8})")), "not a safetensors file", out);
  expect_usage_error(forward(with_header("shape.safetensors",
                                         R"({"x": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}})", 4)),
                     "number overflow parsing '1e400'", out);
  expect_usage_error(forward(with_header("eps.safetensors",
                                         R"({"__metadata__": {"blocklab.config": "{\"eps\": 1e99999}"}})", 0)),
                     "config is not valid JSON: number overflow", out);
  expect_usage_error(forward(with_header("deep.safetensors", "{\"a\": " + std::string(60000, '[') + std::string(60000, ']') + "}", 0)),
                     "nested deeper than 64 levels", out);
  expect_usage_error(forward(with_header("wide.safetensors",
                                         R"({"__metadata__": {"blocklab.config": "{\"d_model\": 4294967296, \"n_heads\": 1}"}})", 0)),
                     "config key 'd_model': expected an integer <= 65536", out);
  expect_usage_error(forward(with_header("layers.safetensors",
                                         R"({"__metadata__": {"blocklab.config": "{\"n_layers\": 9007199254740992}"}})", 0)),
                     "config key 'n_layers': expected an integer <= 4096", out);
  expect_usage_error(forward(with_header("dims.safetensors",
                                         "{" + meta + R"(, "x": {"dtype": "F32", "shape": [0, 18446744073709551615], "data_offsets": [0, 0]}})", 0)),
                     "expected at most 2^40 elements", out);
  // A config file given with --config: the same parser.
  write_bytes("deep.json", "{\"d_model\": " + std::string(60000, '[') + std::string(60000, ']') + "}");
  expect_usage_error(run("forward --model " + m + " --input " + in + " --output " + out + " --config " + path("deep.json")),
                     "nested deeper than 64 levels", out);
  write_bytes("huge.json", R"({"d_model": 8, "n_heads": 2, "d_ff": 16, "eps": 1e99999})");
  expect_usage_error(run("forward --model " + m + " --input " + in + " --output " + out + " --config " + path("huge.json")),
                     "number overflow", out);
  // A --config for a file saved by PyTorch must say the two keys whose defaults differ from PyTorch's.
  write_bytes("guess.json", R"({"d_model": 8, "n_heads": 2, "d_ff": 16, "n_layers": 2, "placement": "pre"})");
  expect_usage_error(run("forward --model " + m + " --input " + in + " --output " + out + " --config " + path("guess.json")),
                     "config key 'activation': expected it given, \"relu\" (PyTorch's default)", out);
  write_bytes("guess2.json", R"({"d_model": 8, "n_heads": 2, "d_ff": 16, "n_layers": 2, "activation": "relu"})");
  expect_usage_error(run("backward --model " + m + " --input " + in + " --output " + out + " --config " + path("guess2.json")),
                     "config key 'placement': expected it given, \"post\" (PyTorch's default, norm_first=False)", out);
  // The input file is read by the same parser.
  expect_usage_error(run("forward --model " + m + " --input " + write_bytes("in.pt", std::string("PK\x03\x04", 4) + "zz") +
                         " --output " + out),
                     "PyTorch pickle/zip", out);
}

}  // namespace
}  // namespace blocklab
