// blocklab tokenize: a text's ids (from the argument or standard input), --json, --decode, and every bad input
// (exit 2, one line naming what and where). On a small byte-level vocabulary written here; the real GPT-2 one
// is tests/text/gpt2_parity_test.cpp's.
#include <nlohmann/json.hpp>

#include "cli_fixture.h"
#include "text/gpt2_tokenizer.h"

namespace blocklab::testing {
namespace {

using json = nlohmann::json;

class TokenizeCli : public Cli {
 protected:
  // vocab.json + merges.txt: the 256 byte tokens, then " t", "he", " the", "ca", " ca".
  std::string make_tokenizer(const std::string& merges_extra = "") const {
    json v = json::object();
    for (int b = 0; b < 256; ++b) v[text::gpt2_byte_char(uint8_t(b))] = b;
    const std::string sp = text::gpt2_byte_char(' ');
    for (const std::string& t : std::vector<std::string>{sp + "t", "he", sp + "the", "ca", sp + "ca"}) v[t] = int(v.size());
    const fs::path d = dir_ / "tok";
    fs::create_directories(d);
    std::ofstream(d / "vocab.json") << v.dump();
    std::ofstream(d / "merges.txt") << "#version: 0.2\n" << sp << " t\nh e\n" << sp << "t he\nc a\n" << sp << " ca\n"
                                    << merges_extra;
    return d.string();
  }
  std::vector<int32_t> ids_of(const std::string& dir, const std::string& text) const {
    return text::Gpt2Tokenizer::load(dir).value().encode(text).value();
  }
  static std::string line_of(const std::vector<int32_t>& ids) {
    std::string s;
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i]);
    return s + "\n";
  }
};

TEST_F(TokenizeCli, PrintsTheIdsOnOneLine) {
  const std::string d = make_tokenizer();
  const CliRun r = run("tokenize --model " + d + " 'the cat'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "116 257 260 116\n");  // t, he, " ca", t
  EXPECT_EQ(r.out, line_of(ids_of(d, "the cat")));
  EXPECT_EQ(r.err, "");
  const CliRun empty = run("tokenize --model " + d + " ''");
  ASSERT_EQ(empty.code, 0) << empty.err;
  EXPECT_EQ(empty.out, "\n");
  const CliRun dash = run("tokenize --model " + d + " -- '-the'");  // a text that starts with '-'
  ASSERT_EQ(dash.code, 0) << dash.err;
  EXPECT_EQ(dash.out, line_of(ids_of(d, "-the")));
}

TEST_F(TokenizeCli, ReadsStandardInputEveryByte) {
  const std::string d = make_tokenizer();
  const std::string text = "the cat\n\n  the\tcat  \n";  // newlines, tabs and trailing spaces kept
  std::ofstream(path("in.txt"), std::ios::binary) << text;
  const CliRun r = run("tokenize --model " + d + " - < " + path("in.txt"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, line_of(ids_of(d, text)));
}

TEST_F(TokenizeCli, JsonHasIdsTokensAndPieces) {
  const std::string d = make_tokenizer();
  const CliRun r = run("tokenize --model " + d + " --json 'the caf\xC3\xA9'");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j.at("ids"), json(ids_of(d, "the caf\xC3\xA9")));
  EXPECT_EQ(j.at("tokens"), json({"t", "he", "\u0120ca", "f", "\u00c3", "\u00a9"}));
  EXPECT_EQ(j.at("pieces"), json({"t", "he", " ca", "f", "\uFFFD", "\uFFFD"}));  // é's two bytes, each no character
}

TEST_F(TokenizeCli, DecodeGivesTheTextExactly) {
  const std::string d = make_tokenizer();
  const CliRun r = run("tokenize --model " + d + " --decode '116 257 260 116 10 32 32'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "the cat\n  ");
  const CliRun brackets = run("tokenize --model " + d + " --decode '[116, 257]'");
  ASSERT_EQ(brackets.code, 0) << brackets.err;
  EXPECT_EQ(brackets.out, "the");
  std::ofstream(path("ids.txt")) << "195\n169\n195\n";  // é, then half of one
  const CliRun j = run("tokenize --model " + d + " --decode --json - < " + path("ids.txt"));
  ASSERT_EQ(j.code, 0) << j.err;
  EXPECT_EQ(json::parse(j.out).at("text"), "\u00e9\uFFFD");
}

TEST_F(TokenizeCli, BadInputIsOneLineAndExitTwo) {
  const std::string d = make_tokenizer();
  expect_usage_error(run("tokenize 'the'"), "--model is required");
  expect_usage_error(run("tokenize --model " + d), "text is required");
  expect_usage_error(run("tokenize --model " + path("nowhere") + " x"),
                     "blocklab tokenize: --model: " + path("nowhere") + ": no such folder");
  expect_usage_error(run("tokenize --model " + dir_.string() + " x"), "no tokenizer files");
  expect_usage_error(run("tokenize --model " + d + " \"$(printf 'ok\\377')\""),
                     "blocklab tokenize: TEXT: expected UTF-8 text, got bytes that are not UTF-8 at byte 2 (0xFF)");
  std::ofstream(path("bad.txt"), std::ios::binary) << "the \xC3(";
  expect_usage_error(run("tokenize --model " + d + " - < " + path("bad.txt")),
                     "blocklab tokenize: standard input: expected UTF-8 text, got bytes that are not UTF-8 at byte 4");
  std::ofstream(path("huge.txt")).close();
  fs::resize_file(path("huge.txt"), text::kMaxTextBytes + 1);  // 64 MiB and a byte of NULs (sparse)
  expect_usage_error(run("tokenize --model " + d + " - < " + path("huge.txt")),
                     "blocklab tokenize: standard input: more than 67108864 bytes: expected at most 67108864 bytes of text");
  expect_usage_error(run("tokenize --model " + d + " --decode '116 x1'"),
                     "blocklab tokenize: TEXT: word 2: expected a token id (a non-negative integer), got \"x1\"");
  expect_usage_error(run("tokenize --model " + d + " --decode '116 -3'"), "word 2: expected a token id");
  expect_usage_error(run("tokenize --model " + d + " --decode '116 261'"),
                     "blocklab tokenize: TEXT: id 261 at position 1: expected 0..260");
  const std::string broken = make_tokenizer("x\n");
  expect_usage_error(run("tokenize --model " + broken + " x"),
                     broken + "/merges.txt:7: expected a merge, two tokens separated by a space, got \"x\"");
}

}  // namespace
}  // namespace blocklab::testing
