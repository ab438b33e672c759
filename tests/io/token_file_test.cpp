// Reading a user's training data (train --data): text bytes, NumPy .npy ids, safetensors ids; every
// malformed file refused with a message naming the file and what was wrong.
#include "io/token_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "io/safetensors.h"

namespace blocklab::io {
namespace {

namespace fs = std::filesystem;

// A .npy file's bytes: version 1.0, the header padded to a multiple of 64 as NumPy writes it.
std::string npy(const std::string& descr, const std::string& shape, const std::string& data, bool fortran = false,
                int version = 1) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                       ", 'shape': " + shape + ", }";
  const size_t fixed = version == 1 ? 10 : 12;
  while ((fixed + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += char(version);
  out += char(0);
  const size_t n = header.size();
  out += char(n & 0xff);
  out += char((n >> 8) & 0xff);
  if (version != 1) out += std::string(2, '\0');
  return out + header + data;
}

std::string le(std::initializer_list<int64_t> values, int width) {
  std::string out;
  for (int64_t v : values)
    for (int k = 0; k < width; ++k) out += char((uint64_t(v) >> (8 * k)) & 0xff);
  return out;
}

class TokenFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("blocklab_tokens_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& bytes) const {
    const std::string p = (dir_ / name).string();
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  fs::path dir_;
};

TEST_F(TokenFileTest, TextIsItsBytesOverTheirSortedAlphabet) {
  const Result<TokenFile> f = read_token_file(write("a.txt", "banana\xc3\xa9"));
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  EXPECT_EQ(f->format, "text");
  EXPECT_EQ(*f->alphabet, std::string("abn\xa9\xc3"));  // bytes, sorted as unsigned char
  EXPECT_EQ(f->vocab_size, 5);
  EXPECT_EQ(f->ids, (std::vector<int32_t>{1, 0, 2, 0, 2, 0, 4, 3}));
  EXPECT_EQ(f->hash.size(), 16u);
  EXPECT_EQ(read_token_file(write("b.txt", "banana\xc3\xa9"))->hash, f->hash);
  EXPECT_NE(read_token_file(write("c.txt", "banana\xc3\xa8"))->hash, f->hash);
}

TEST_F(TokenFileTest, NpyIdsOfEveryIntegerWidthAndVersion) {
  for (int version : {1, 2, 3}) {
    const Result<TokenFile> f = read_token_file(write("a.npy", npy("<i4", "(4,)", le({3, 0, 7, 1}, 4), false, version)));
    ASSERT_TRUE(f.is_ok()) << f.status().message();
    EXPECT_EQ(f->ids, (std::vector<int32_t>{3, 0, 7, 1}));
    EXPECT_EQ(f->vocab_size, 8);
    EXPECT_FALSE(f->alphabet);
  }
  EXPECT_EQ(read_token_file(write("u1.npy", npy("|u1", "(3,)", le({255, 0, 9}, 1))))->ids, (std::vector<int32_t>{255, 0, 9}));
  EXPECT_EQ(read_token_file(write("u2.npy", npy("<u2", "(2,)", le({50256, 11}, 2))))->ids, (std::vector<int32_t>{50256, 11}));
  EXPECT_EQ(read_token_file(write("i8.npy", npy("<i8", "(2,)", le({5, 2147483647}, 8))))->ids,
            (std::vector<int32_t>{5, 2147483647}));
  // 2-D: rows of tokens, read row after row.
  EXPECT_EQ(read_token_file(write("r.npy", npy("<i2", "(2, 3)", le({1, 2, 3, 4, 5, 6}, 2))))->ids,
            (std::vector<int32_t>{1, 2, 3, 4, 5, 6}));
}

TEST_F(TokenFileTest, BadNpyFilesAreRefusedByName) {
  auto error = [&](const std::string& bytes) {
    const Result<TokenFile> f = read_token_file(write("bad.npy", bytes));
    EXPECT_FALSE(f.is_ok());
    return f.is_ok() ? std::string() : f.status().message();
  };
  EXPECT_NE(error("not numpy at all").find("expected a NumPy .npy file"), std::string::npos);
  EXPECT_NE(error(npy("<f4", "(1,)", le({0}, 4))).find("got '<f4'"), std::string::npos);
  EXPECT_NE(error(npy(">i4", "(1,)", le({0}, 4))).find("little-endian"), std::string::npos);
  EXPECT_NE(error(npy("<i4", "(2,)", le({1}, 4))).find("expected 2 values of 4 bytes"), std::string::npos);
  EXPECT_NE(error(npy("<i4", "(1,)", le({-1}, 4))).find("ids[0]: expected a token id"), std::string::npos);
  EXPECT_NE(error(npy("<u8", "(1,)", le({-1}, 8))).find("ids[0]"), std::string::npos);  // 2^64 - 1
  EXPECT_NE(error(npy("<i4", "(2, 2)", le({1, 2, 3, 4}, 4), true)).find("fortran_order"), std::string::npos);
  EXPECT_NE(error(npy("<i4", "(1, 1, 1)", le({1}, 4))).find("1 or 2 dimensions"), std::string::npos);
  EXPECT_NE(error(npy("<i4", "(0,)", "")).find("at least one token"), std::string::npos);
  std::string cut = npy("<i4", "(1,)", le({1}, 4));
  cut[8] = char(0xff);  // a header longer than the file
  EXPECT_NE(error(cut).find("header is longer than the file"), std::string::npos);
  cut = npy("<i4", "(1,)", le({1}, 4));
  cut[6] = 9;
  EXPECT_NE(error(cut).find("version: expected 1, 2 or 3, got 9"), std::string::npos);
}

TEST_F(TokenFileTest, SafetensorsIdsFromOneTensorOrOneNamedTokens) {
  SafetensorsFile one;
  one.add(from_int_ids("ids", {3}, {4, 0, 2}));
  ASSERT_TRUE(write_safetensors((dir_ / "one.safetensors").string(), one).is_ok());
  const Result<TokenFile> f = read_token_file((dir_ / "one.safetensors").string());
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  EXPECT_EQ(f->ids, (std::vector<int32_t>{4, 0, 2}));
  EXPECT_EQ(f->vocab_size, 5);
  SafetensorsFile two = one;
  two.add(from_int_ids("other", {1}, {1}));
  ASSERT_TRUE(write_safetensors((dir_ / "two.safetensors").string(), two).is_ok());
  const Result<TokenFile> g = read_token_file((dir_ / "two.safetensors").string());
  ASSERT_FALSE(g.is_ok());
  EXPECT_NE(g.status().message().find("one named \"tokens\", got 2 tensors"), std::string::npos);
  two.tensors[0].name = "tokens";
  ASSERT_TRUE(write_safetensors((dir_ / "named.safetensors").string(), two).is_ok());
  EXPECT_EQ(read_token_file((dir_ / "named.safetensors").string())->ids, (std::vector<int32_t>{4, 0, 2}));
  SafetensorsFile floats;
  floats.add(from_float_tensor("x", Tensor<float>({2}), DType::F32));
  ASSERT_TRUE(write_safetensors((dir_ / "f.safetensors").string(), floats).is_ok());
  const Result<TokenFile> h = read_token_file((dir_ / "f.safetensors").string());
  ASSERT_FALSE(h.is_ok());
  EXPECT_NE(h.status().message().find("expected integer token ids"), std::string::npos);
}

TEST_F(TokenFileTest, MissingEmptyAndDirectoryPathsAreRefused) {
  EXPECT_FALSE(read_token_file((dir_ / "nothing.txt").string()).is_ok());
  EXPECT_NE(read_token_file(write("e.txt", "")).status().message().find("at least one token"), std::string::npos);
  EXPECT_NE(read_token_file(dir_.string()).status().message().find("expected a regular file"), std::string::npos);
}

}  // namespace
}  // namespace blocklab::io
