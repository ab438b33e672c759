// The fixture of the CLI tests: a scratch folder per test, running build/blocklab and checking
// the contract for bad input (exit 2, one line on stderr, no output file).
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "io/safetensors.h"

namespace blocklab::testing {

namespace fs = std::filesystem;

struct CliRun {
  int code;
  std::string out, err;
};

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("blocklab_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  CliRun run(const std::string& args) const {
    const std::string out = path("stdout.txt"), err = path("stderr.txt");
    const std::string cmd = std::string(BLOCKLAB_BINARY) + " " + args + " >" + out + " 2>" + err;
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
  }

  static std::string slurp(const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // Exit 2, exactly one line on stderr containing `needle`, nothing written at `output`.
  void expect_usage_error(const CliRun& r, const std::string& needle, const std::string& output = "") const {
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr: " << r.err << "expected to contain: " << needle;
    EXPECT_EQ(r.err.rfind("blocklab", 0), 0u) << r.err;
    if (!output.empty()) {
      EXPECT_FALSE(fs::exists(output)) << output << " was written";
      for (const auto& e : fs::directory_iterator(dir_))
        EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << "temporary left: " << e.path();
    }
  }

  std::string make_model(const std::string& flags = "--d-model 8 --n-heads 2 --d-ff 16 --n-layers 2") const {
    const std::string m = path("model.safetensors");
    const CliRun r = run("init " + flags + " --seed 1 --output " + m);
    EXPECT_EQ(r.code, 0) << r.err;
    return m;
  }

  std::string make_input(const Shape& shape, bool with_dy = false, const std::string& name = "in.safetensors") const {
    io::SafetensorsFile f;
    Tensor<float> x(shape);
    for (int64_t i = 0; i < x.numel(); ++i) x.data[size_t(i)] = std::sin(0.37f * float(i));
    f.add(io::from_float_tensor("x", x, io::DType::F32));
    if (with_dy) {
      Tensor<float> dy(shape);
      for (int64_t i = 0; i < dy.numel(); ++i) dy.data[size_t(i)] = std::cos(0.11f * float(i));
      f.add(io::from_float_tensor("dy", dy, io::DType::F32));
    }
    const std::string p = path(name);
    EXPECT_TRUE(io::write_safetensors(p, f).is_ok());
    return p;
  }

  // A token input file for a language model of the copy task's vocabulary.
  std::string make_tokens(const std::string& name = "tokens.safetensors") const {
    io::SafetensorsFile f;
    f.add(io::from_int_ids("tokens", {2, 4}, {0, 1, 2, 3, 4, 3, 2, 1}));
    const std::string p = path(name);
    EXPECT_TRUE(io::write_safetensors(p, f).is_ok());
    return p;
  }

  fs::path dir_;
};

inline io::SafetensorsFile read(const std::string& p) {
  Result<io::SafetensorsFile> r = io::read_safetensors(p);
  EXPECT_TRUE(r.is_ok()) << (r.is_ok() ? "" : r.status().message());
  return r.is_ok() ? r.value() : io::SafetensorsFile{};
}

}  // namespace blocklab::testing
