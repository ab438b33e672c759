// safetensors: round trips, dtype conversion, and every way a file can be broken.
#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace blocklab::io {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> file_with_header(const std::string& header, size_t data_bytes) {
  const uint64_t n = header.size();
  std::vector<uint8_t> out(8 + header.size() + data_bytes, 0);
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

std::string parse_error(const std::vector<uint8_t>& bytes) {
  Result<SafetensorsFile> r = parse_safetensors(bytes, "f.safetensors");
  EXPECT_FALSE(r.is_ok());
  return r.is_ok() ? "" : r.status().message();
}

SafetensorsFile sample() {
  SafetensorsFile f;
  f.metadata["blocklab.config"] = "{\"d_model\": 2}";
  f.add(from_float_tensor("a", Tensor<float>({2, 2}, {1, 2, 3, 4}), DType::F32));
  f.add(from_float_tensor("b", Tensor<double>({3}, {0.5, -1.25, 1e-300}), DType::F64));
  f.add(from_int_ids("ids", {2}, {7, -1}));
  return f;
}

TEST(Safetensors, RoundTrip) {
  const std::vector<uint8_t> bytes = serialize_safetensors(sample());
  uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ((8 + header_len) % 8, 0u);  // data aligned to 8 bytes
  Result<SafetensorsFile> r = parse_safetensors(bytes, "mem");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->metadata.at("blocklab.config"), "{\"d_model\": 2}");
  ASSERT_EQ(r->tensors.size(), 3u);
  EXPECT_EQ(to_float_tensor<float>(*r->find("a"), "mem")->data, (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(to_float_tensor<double>(*r->find("b"), "mem")->data, (std::vector<double>{0.5, -1.25, 1e-300}));
  EXPECT_EQ(to_int_ids(*r->find("ids"), "mem").value(), (std::vector<int32_t>{7, -1}));
  EXPECT_EQ(r->find("a")->shape, (Shape{2, 2}));
}

TEST(Safetensors, ConvertsHalfAndBFloat16AndDouble) {
  // F16 1.0 = 0x3C00, -2.0 = 0xC000, 65504 = 0x7BFF, smallest subnormal 2^-24 = 0x0001;
  // BF16 1.0 = 0x3F80, -0.5 = 0xBF00.
  auto stored = [](DType dt, std::vector<uint16_t> bits) {
    StoredTensor t{"t", dt, {int64_t(bits.size())}, std::vector<uint8_t>(bits.size() * 2)};
    std::memcpy(t.bytes.data(), bits.data(), t.bytes.size());
    return t;
  };
  EXPECT_EQ(to_float_tensor<float>(stored(DType::F16, {0x3C00, 0xC000, 0x7BFF}), "w")->data,
            (std::vector<float>{1.0f, -2.0f, 65504.0f}));
  EXPECT_EQ(to_float_tensor<double>(stored(DType::F16, {0x0001}), "w")->data[0], std::ldexp(1.0, -24));
  EXPECT_EQ(to_float_tensor<float>(stored(DType::BF16, {0x3F80, 0xBF00}), "w")->data,
            (std::vector<float>{1.0f, -0.5f}));
  const StoredTensor f64 = from_float_tensor("d", Tensor<double>({1}, {0.1}), DType::F64);
  EXPECT_EQ(to_float_tensor<float>(f64, "w")->data[0], 0.1f);
  const StoredTensor ints = from_int_ids("i", {1}, {3});
  Result<Tensor<float>> bad = to_float_tensor<float>(ints, "w");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().message(), "w: tensor 'i': dtype: expected F32, F64, F16 or BF16, got I64");
}

TEST(Safetensors, TruncatedBeforeTheHeaderLength) {
  EXPECT_EQ(parse_error({1, 2, 3}), "f.safetensors: truncated: expected at least 8 bytes (the header length), got 3");
}

TEST(Safetensors, HeaderLengthPastTheEndOfTheFile) {
  std::vector<uint8_t> bytes = file_with_header("{}", 0);
  const uint64_t huge = 1000;
  std::memcpy(bytes.data(), &huge, 8);
  EXPECT_EQ(parse_error(bytes), "f.safetensors: header length 1000 runs past the end of the file: expected <= 2 bytes");
}

TEST(Safetensors, HeaderThatIsNotJson) {
  EXPECT_NE(parse_error(file_with_header("{\"a\": ", 0)).find("header is not valid JSON"), std::string::npos);
  EXPECT_EQ(parse_error(file_with_header("[1, 2]", 0)), "f.safetensors: header: expected a JSON object, got array");
}

TEST(Safetensors, OffsetsOutsideTheData) {
  const std::string h = R"({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})";
  EXPECT_EQ(parse_error(file_with_header(h, 8)),
            "f.safetensors: tensor 'x': data_offsets [0, 16] outside the data section of 8 bytes (truncated file?)");
}

TEST(Safetensors, TruncatedData) {
  std::vector<uint8_t> bytes = serialize_safetensors(sample());
  bytes.resize(bytes.size() - 3);
  EXPECT_NE(parse_error(bytes).find("outside the data section"), std::string::npos);
}

TEST(Safetensors, OffsetsThatDoNotMatchTheShape) {
  const std::string h = R"({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})";
  EXPECT_EQ(parse_error(file_with_header(h, 8)),
            "f.safetensors: tensor 'x': data_offsets span 8 bytes: expected 12 for F32 [3]");
}

TEST(Safetensors, OverlappingOrGappedTensors) {
  const std::string overlap = R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                  "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})";
  EXPECT_NE(parse_error(file_with_header(overlap, 12)).find("without gaps or overlap"), std::string::npos);
  const std::string trailing = R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})";
  EXPECT_EQ(parse_error(file_with_header(trailing, 8)),
            "f.safetensors: data section has 4 bytes after the last tensor: expected 0");
}

TEST(Safetensors, BadEntries) {
  EXPECT_NE(parse_error(file_with_header(R"({"x": {"dtype": "F31", "shape": [1], "data_offsets": [0, 4]}})", 4))
                .find("tensor 'x': dtype: expected one of"),
            std::string::npos);
  EXPECT_NE(parse_error(file_with_header(R"({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4))
                .find("shape: expected non-negative integers"),
            std::string::npos);
  EXPECT_EQ(parse_error(file_with_header(R"({"x": {"dtype": "F32", "shape": [1]}})", 4)),
            "f.safetensors: tensor 'x': missing \"data_offsets\"");
  EXPECT_EQ(parse_error(file_with_header(R"({"__metadata__": {"k": 1}})", 0)),
            "f.safetensors: __metadata__.k: expected a string, got number");
  EXPECT_NE(parse_error(file_with_header(R"({"x": {"dtype": "F32", "shape": [1099511627776, 1099511627776], "data_offsets": [0, 4]}})", 4))
                .find("too large"),
            std::string::npos);
}

TEST(Safetensors, ReadsFilesWrittenByOtherWritersWithHeaderPadding) {
  // The reference writer pads the header with spaces; an empty file is just "{}".
  Result<SafetensorsFile> r = parse_safetensors(file_with_header("{}      ", 0), "f");
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE(r->tensors.empty());
}

TEST(Safetensors, WriteIsAtomicAndReportsBadPaths) {
  const fs::path dir = fs::temp_directory_path() / ("blocklab_st_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "out.safetensors").string();
  ASSERT_TRUE(write_safetensors(path, sample()).is_ok());
  Result<SafetensorsFile> back = read_safetensors(path);
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(back->tensors.size(), 3u);
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1u);  // no temporary left behind
  Status st = write_safetensors((dir / "no" / "such" / "dir.safetensors").string(), sample());
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("cannot write"), std::string::npos);
  Result<SafetensorsFile> missing = read_safetensors((dir / "missing.safetensors").string());
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("cannot open: No such file or directory"), std::string::npos);
  fs::remove_all(dir);
}

TEST(Safetensors, IntIdsRejectFractions) {
  const StoredTensor t = from_float_tensor("tokens", Tensor<float>({2}, {1.0f, 2.5f}), DType::F32);
  Result<std::vector<int32_t>> r = to_int_ids(t, "in");
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("tokens'[1]: expected an integer id"), std::string::npos);
}

// ---- Hostile files (issue 11) ---------------------------------------------------------------------

std::vector<uint8_t> bytes_of(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

TEST(Safetensors, HeaderNestedTooDeepIsRefusedWhileParsing) {
  // 60,000 levels (120 KB): printing or copying it would overflow the stack.
  const std::string h = "{\"__metadata__\": " + std::string(60000, '[') + std::string(60000, ']') + "}";
  const std::string e = parse_error(file_with_header(h, 0));
  EXPECT_NE(e.find("nested deeper than 64 levels"), std::string::npos) << e;
  EXPECT_EQ(e.rfind("f.safetensors: header", 0), 0u) << e;
}

TEST(Safetensors, NumbersBeyondADoubleOrAnIntegerAreErrorsNotExceptions) {
  EXPECT_NE(parse_error(file_with_header(R"({"x": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}})", 4))
                .find("number overflow parsing '1e400'"),
            std::string::npos);
  EXPECT_NE(parse_error(file_with_header(R"({"x": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", 4))
                .find("shape: expected non-negative integers, got [1.5]"),
            std::string::npos);
  EXPECT_NE(parse_error(file_with_header(R"({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4))
                .find("shape: expected non-negative integers"),
            std::string::npos);
  // A zero dimension must not let a huge one through (it would become a negative int64).
  EXPECT_NE(parse_error(file_with_header(
                            R"({"x": {"dtype": "F32", "shape": [0, 18446744073709551615], "data_offsets": [0, 0]}})", 0))
                .find("expected at most 2^40 elements"),
            std::string::npos);
  EXPECT_NE(parse_error(file_with_header(R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4.0]}})", 4))
                .find("data_offsets: expected [begin, end] with integers"),
            std::string::npos);
  EXPECT_NE(parse_error(file_with_header(R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 1e999]}})", 4))
                .find("number overflow"),
            std::string::npos);
}

TEST(Safetensors, APyTorchPickleOrZipIsNamedWithHowToConvert) {
  std::vector<uint8_t> zip = bytes_of(std::string("PK\x03\x04", 4) + std::string(600, 'z'));
  std::string e = parse_error(zip);
  EXPECT_NE(e.find("not a safetensors file"), std::string::npos) << e;
  EXPECT_NE(e.find("PyTorch pickle/zip"), std::string::npos) << e;
  EXPECT_NE(e.find("save_file(model.state_dict(), \"m.safetensors\")"), std::string::npos) << e;
  EXPECT_EQ(e.find("header length"), std::string::npos) << e;
  for (uint8_t protocol : {2, 3, 4, 5}) {
    std::vector<uint8_t> pickle = {0x80, protocol, 0x63, 0x63, 0x6f, 0x6c, 0x6c, 0x65, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x73};
    e = parse_error(pickle);
    EXPECT_NE(e.find("not a safetensors file: it is a Python pickle (protocol " + std::to_string(protocol)), std::string::npos) << e;
    EXPECT_NE(e.find("save_file"), std::string::npos) << e;
  }
}

TEST(Safetensors, TextOrJsonIsNotASafetensorsFile) {
  for (const std::string& text : {std::string(R"({"d_model": 64, "n_heads": 4})"), std::string("hello world\n"),
                                 std::string("abc")}) {
    const std::string e = parse_error(bytes_of(text));
    EXPECT_NE(e.find("f.safetensors: not a safetensors file: it starts with text"), std::string::npos) << e;
  }
}

TEST(Safetensors, ARealHeaderLengthThatStartsLikeAPickleStillParses) {
  // 0x80 0x02 as the low bytes of the header length is 640 bytes of header: a safetensors file, not a pickle.
  SafetensorsFile f;
  f.metadata["pad"] = std::string(500, 'p');
  f.add(from_float_tensor("a", Tensor<float>({1}, {1}), DType::F32));
  std::vector<uint8_t> bytes = serialize_safetensors(f);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  // Re-pad the header to exactly 0x280 bytes.
  std::string header(bytes.begin() + 8, bytes.begin() + 8 + std::ptrdiff_t(n));
  while (header.back() == ' ') header.pop_back();
  ASSERT_LE(header.size(), 0x280u);
  header.append(0x280 - header.size(), ' ');
  std::vector<uint8_t> out = file_with_header(header, 4);
  std::memcpy(out.data() + 8 + header.size(), bytes.data() + bytes.size() - 4, 4);
  ASSERT_EQ(out[0], 0x80);
  ASSERT_EQ(out[1], 0x02);
  Result<SafetensorsFile> r = parse_safetensors(out, "f");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->find("a")->shape, (Shape{1}));
}

}  // namespace
}  // namespace blocklab::io
