// GPT-2's tokenizer on small vocabularies made here: the byte characters, the pre-tokenizer's pieces, the merge
// loop (the rescan and the heap against each other, and against encoder.py's order of merges), UTF-8 in and out,
// the limits, every malformed file, the cache and threads. The real vocabulary: gpt2_parity_test.cpp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "text/bpe.h"
#include "text/gpt2_tokenizer.h"
#include "text/utf8.h"

namespace blocklab::text {
namespace {

namespace fs = std::filesystem;

// --- a byte-level vocabulary made from merges written in plain bytes ----------------------------------------

std::string spelt(std::string_view bytes) {
  std::string s;
  for (char c : bytes) s += gpt2_byte_char(static_cast<uint8_t>(c));
  return s;
}

struct Files {
  std::string vocab, merges;
};

// The 256 byte tokens (ids 0..255 in byte order), then one token per merge, in order; merges given as bytes.
Files make_files(const std::vector<std::pair<std::string, std::string>>& merges, bool header = true) {
  nlohmann::json v = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) v[gpt2_byte_char(uint8_t(b))] = b;
  std::string m = header ? "#version: 0.2\n" : "";
  for (const auto& [l, r] : merges) {
    const std::string joined = spelt(l + r);
    if (!v.contains(joined)) v[joined] = int(v.size());
    m += spelt(l) + " " + spelt(r) + "\n";
  }
  return {v.dump(), m};
}

Gpt2Tokenizer make(const std::vector<std::pair<std::string, std::string>>& merges) {
  const Files f = make_files(merges);
  Result<Gpt2Tokenizer> t = Gpt2Tokenizer::parse(f.vocab, f.merges);
  EXPECT_TRUE(t.is_ok()) << t.status().message();
  return std::move(t).value();
}

std::vector<std::string> tokens_of(const Gpt2Tokenizer& t, std::string_view text) {
  Result<std::vector<int32_t>> ids = t.encode(text);
  EXPECT_TRUE(ids.is_ok()) << ids.status().message();
  std::vector<std::string> out;
  if (ids)
    for (int32_t id : ids.value()) out.push_back(t.token_bytes(id));
  return out;
}

std::vector<std::string> pieces(std::string_view text) {
  Result<std::vector<std::string_view>> p = gpt2_pretokenize(text);
  EXPECT_TRUE(p.is_ok()) << p.status().message();
  std::vector<std::string> out;
  if (p)
    for (std::string_view s : p.value()) out.emplace_back(s);
  return out;
}

using Strings = std::vector<std::string>;

// --- bytes as characters ------------------------------------------------------------------------------------

TEST(Gpt2ByteChars, PrintableBytesStandForThemselvesTheOthersFromU0100InByteOrder) {
  EXPECT_EQ(gpt2_byte_char('!'), "!");
  EXPECT_EQ(gpt2_byte_char('~'), "~");
  EXPECT_EQ(gpt2_byte_char(0xE9), "\u00e9");  // é
  EXPECT_EQ(gpt2_byte_char(0x00), "\u0100");  // Ā: the first of the 68
  EXPECT_EQ(gpt2_byte_char(' '), "\u0120");   // Ġ: bytes 0..32 are the first 33
  EXPECT_EQ(gpt2_byte_char('\n'), "\u010a");  // Ċ
  EXPECT_EQ(gpt2_byte_char(0x7F), "\u0121");  // ġ: then 127..160
  EXPECT_EQ(gpt2_byte_char(0xA0), "\u0142");  // ł
  EXPECT_EQ(gpt2_byte_char(0xAD), "\u0143");  // Ń: the soft hyphen, the last
  std::set<std::string> all;
  for (int b = 0; b < 256; ++b) all.insert(gpt2_byte_char(uint8_t(b)));
  EXPECT_EQ(all.size(), 256u);
}

// --- the pre-tokenizer --------------------------------------------------------------------------------------

TEST(Gpt2Pretokenize, WordsKeepTheirLeadingSpace) {
  EXPECT_EQ(pieces("Hello world"), (Strings{"Hello", " world"}));
  EXPECT_EQ(pieces("Hello, world!"), (Strings{"Hello", ",", " world", "!"}));
  EXPECT_EQ(pieces(""), Strings{});
}

TEST(Gpt2Pretokenize, ContractionsAreLowerCaseOnly) {
  EXPECT_EQ(pieces("I'm"), (Strings{"I", "'m"}));
  EXPECT_EQ(pieces("they've we'll he'd"), (Strings{"they", "'ve", " we", "'ll", " he", "'d"}));
  EXPECT_EQ(pieces("HE'S"), (Strings{"HE", "'", "S"}));  // upper case: punctuation, then a word
  EXPECT_EQ(pieces("it\u2019s"), (Strings{"it", "\u2019", "s"}));  // the curly apostrophe is punctuation
  EXPECT_EQ(pieces("'s's"), (Strings{"'s", "'s"}));
}

TEST(Gpt2Pretokenize, WhitespaceRunsLeaveTheirLastSpaceToTheNextWord) {
  EXPECT_EQ(pieces("a   b"), (Strings{"a", "  ", " b"}));
  EXPECT_EQ(pieces("trailing   "), (Strings{"trailing", "   "}));
  EXPECT_EQ(pieces("a\n\nb"), (Strings{"a", "\n", "\n", "b"}));  // \s+(?!\S) stops before the last, \s+ takes it
  EXPECT_EQ(pieces("a \n b"), (Strings{"a", " \n", " b"}));
  EXPECT_EQ(pieces("\t\tx"), (Strings{"\t", "\t", "x"}));
  EXPECT_EQ(pieces("x\u3000\u3000y"), (Strings{"x", "\u3000", "\u3000", "y"}));  // no leading " ?" for U+3000
}

TEST(Gpt2Pretokenize, NumbersLettersMarksAndOthers) {
  EXPECT_EQ(pieces("1234567 89"), (Strings{"1234567", " 89"}));  // one run of digits, however long
  EXPECT_EQ(pieces(" 42!?"), (Strings{" 42", "!?"}));
  EXPECT_EQ(pieces("x\u00b2"), (Strings{"x", "\u00b2"}));        // ² is a number (No)
  EXPECT_EQ(pieces("e\u0301t\u00e9"), (Strings{"e", "\u0301", "t\u00e9"}));  // a combining mark is not a letter
  EXPECT_EQ(pieces("a\U0001F600b"), (Strings{"a", "\U0001F600", "b"}));
  EXPECT_EQ(pieces("<|endoftext|>"), (Strings{"<|", "endoftext", "|>"}));
}

// \s is Unicode's White_Space, as the regex module of encoder.py has it (docs/gpt2.md).
TEST(Gpt2Pretokenize, WhiteSpaceIsTheRegexModules) {
  EXPECT_EQ(pieces(" \u0085b"), (Strings{" ", "\u0085", "b"}));  // NEL is White_Space
  EXPECT_EQ(pieces(" \ufeffx"), (Strings{" \ufeff", "x"}));      // BOM is not: a piece of other characters
  EXPECT_EQ(pieces(" \u180ex"), (Strings{" \u180e", "x"}));      // nor the Mongolian vowel separator
  EXPECT_EQ(pieces(" \u200bx"), (Strings{" \u200b", "x"}));      // nor the zero-width space
  EXPECT_EQ(pieces("a\u001cb"), (Strings{"a", "\u001c", "b"}));  // nor the file separator (Python's str.isspace has it)
  EXPECT_EQ(pieces("a\u00a0\u00a0b"), (Strings{"a", "\u00a0", "\u00a0", "b"}));  // " ?" is U+0020 only
}

TEST(Gpt2Pretokenize, PiecesCoverTheText) {
  std::mt19937 rng(7);
  const std::vector<std::string> alphabet = {"a", "Z", " ", "  ", "\n", "\t", "'", "'s", "1", "\u00e9", "\u0301",
                                             "\u4e2d", "\U0001F600", "\u200d", "!", "\u3000", "\u0085", "\ufeff"};
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text;
    const int n = int(rng() % 30);
    for (int i = 0; i < n; ++i) text += alphabet[rng() % alphabet.size()];
    std::string joined;
    for (const std::string& p : pieces(text)) {
      EXPECT_FALSE(p.empty());
      joined += p;
    }
    ASSERT_EQ(joined, text);
  }
}

// --- UTF-8 --------------------------------------------------------------------------------------------------

TEST(Gpt2Utf8, InvalidOffsets) {
  EXPECT_EQ(utf8_invalid_offset("abc"), 3u);
  EXPECT_EQ(utf8_invalid_offset("\u00e9\u20ac\U0001F600"), 9u);
  EXPECT_EQ(utf8_invalid_offset("\xF4\x8F\xBF\xBF"), 4u);     // U+10FFFF
  EXPECT_EQ(utf8_invalid_offset("ab\xFF"), 2u);
  EXPECT_EQ(utf8_invalid_offset("a\x80"), 1u);                // a continuation byte alone
  EXPECT_EQ(utf8_invalid_offset("\xC3"), 0u);                 // cut short
  EXPECT_EQ(utf8_invalid_offset("xy\xC0\xAF"), 2u);           // overlong '/'
  EXPECT_EQ(utf8_invalid_offset("\xE0\x80\xAF"), 0u);         // overlong
  EXPECT_EQ(utf8_invalid_offset("\xED\xA0\x80"), 0u);         // a surrogate
  EXPECT_EQ(utf8_invalid_offset("\xF4\x90\x80\x80"), 0u);     // past U+10FFFF
  EXPECT_EQ(utf8_invalid_offset(std::string_view("a\0b", 3)), 3u);  // NUL is a character
}

// Python's bytes.decode("utf-8", errors="replace") on each (computed with Debian's Python 3.11).
TEST(Gpt2Utf8, ReplacementAsPythonsDecode) {
  const std::string R = "\uFFFD";
  EXPECT_EQ(utf8_replace_invalid("\xFF"), R);
  EXPECT_EQ(utf8_replace_invalid("a\xE2\x82"), "a" + R);
  EXPECT_EQ(utf8_replace_invalid("\xE0\x80\x80"), R + R + R);
  EXPECT_EQ(utf8_replace_invalid("\xF0\x9F\x98"), R);
  EXPECT_EQ(utf8_replace_invalid("\xF0\x9F\x98" "A"), R + "A");
  EXPECT_EQ(utf8_replace_invalid("\xED\xA0\x80"), R + R + R);
  EXPECT_EQ(utf8_replace_invalid("\xC0\xAF"), R + R);
  EXPECT_EQ(utf8_replace_invalid("\xF4\x90\x80\x80"), R + R + R + R);
  EXPECT_EQ(utf8_replace_invalid("\xE2\x82\xAC"), "\u20ac");
  EXPECT_EQ(utf8_replace_invalid("\xF0\x9F\x98\x80\x80"), "\U0001F600" + R);
  EXPECT_EQ(utf8_replace_invalid("\xC3("), R + "(");
}

// GPT-2 tokenizes text: its encoder.py takes a str, and raises on the lone surrogates Python makes of stray
// bytes (surrogateescape). Here: an error naming the offset; nothing is guessed.
TEST(Gpt2Encode, TextThatIsNotUtf8IsRefusedAtItsOffset) {
  const Gpt2Tokenizer t = make({});
  for (const auto& [text, offset] : std::vector<std::pair<std::string, std::string>>{
           {"abc\xFF", "byte 3 (0xFF)"}, {"\x80", "byte 0 (0x80)"}, {"ok \xC3", "byte 3 (0xC3)"},
           {"\xED\xA0\x80x", "byte 0 (0xED 0xA0 0x80 0x78)"}, {"\xC0\xAF", "byte 0 (0xC0 0xAF)"}}) {
    Result<std::vector<int32_t>> ids = t.encode(text);
    ASSERT_FALSE(ids.is_ok());
    EXPECT_NE(ids.status().message().find("expected UTF-8 text"), std::string::npos) << ids.status().message();
    EXPECT_NE(ids.status().message().find(offset), std::string::npos) << ids.status().message();
  }
}

TEST(Gpt2Encode, TextLongerThanTheLimitIsRefused) {
  const Gpt2Tokenizer t = make({});
  const std::string big(kMaxTextBytes + 1, 'a');
  Result<std::vector<int32_t>> ids = t.encode(big);
  ASSERT_FALSE(ids.is_ok());
  EXPECT_EQ(ids.status().message(), "text of 67108865 bytes: expected at most 67108864 bytes");
}

// --- merging ------------------------------------------------------------------------------------------------

TEST(Gpt2Encode, MergesByRankEveryOccurrenceLeftToRight) {
  const Gpt2Tokenizer t = make({{"a", "a"}, {"aa", "aa"}, {" ", "t"}, {"h", "e"}, {" t", "he"}});
  EXPECT_EQ(tokens_of(t, "aaa"), (Strings{"aa", "a"}));  // the first two, then none left
  EXPECT_EQ(tokens_of(t, "aaaa"), (Strings{"aaaa"}));
  EXPECT_EQ(tokens_of(t, "aaaaaaa"), (Strings{"aaaa", "aa", "a"}));
  EXPECT_EQ(tokens_of(t, "the the"), (Strings{"t", "he", " the"}));
  EXPECT_EQ(tokens_of(t, ""), Strings{});
}

// A pair made by a merge waits until every occurrence of the merged pair is merged, even when its own rank is
// lower (encoder.py looks for the lowest pair again only after a whole pass). A heap that took the new pair at
// once would give [ab+a, b, a] here.
TEST(Gpt2Merge, APairMadeByAMergeWaitsForThePassToEnd) {
  enum : int32_t { a, b, X, Xa };
  MergeTable table;
  table.set(a, b, {1, X});
  table.set(X, a, {0, Xa});
  for (auto* merge : {&bpe_merge_rescan, &bpe_merge_heap}) {
    std::vector<int32_t> word = {a, b, a, b, a};
    merge(word, table);
    EXPECT_EQ(word, (std::vector<int32_t>{X, Xa}));
  }
}

// The heap and the rescan on random tables whose ranks are in any order (not the order their parts appear in, as
// a trained file has them), on words with many repeated pairs.
TEST(Gpt2Merge, HeapAndRescanAgree) {
  std::mt19937 rng(11);
  for (int table_no = 0; table_no < 40; ++table_no) {
    const int32_t alphabet = 2 + int32_t(rng() % 4);
    int32_t symbols = alphabet;
    MergeTable table;
    const int n_merges = 5 + int(rng() % 40);
    std::vector<int32_t> ranks(static_cast<size_t>(n_merges));
    for (int i = 0; i < n_merges; ++i) ranks[size_t(i)] = i;
    std::shuffle(ranks.begin(), ranks.end(), rng);
    for (int i = 0; i < n_merges; ++i) table.set(int32_t(rng() % symbols), int32_t(rng() % symbols), {ranks[size_t(i)], symbols++});
    for (int w = 0; w < 500; ++w) {
      std::vector<int32_t> word(1 + rng() % 200);
      for (int32_t& s : word) s = int32_t(rng() % alphabet);
      std::vector<int32_t> by_rescan = word, by_heap = word;
      bpe_merge_rescan(by_rescan, table);
      bpe_merge_heap(by_heap, table);
      ASSERT_EQ(by_rescan, by_heap) << "table " << table_no << ", word " << w;
    }
  }
}

TEST(Gpt2Merge, AMillionLetterWordTakesTheHeap) {
  const Gpt2Tokenizer t = make({{"a", "a"}, {"aa", "aa"}, {"aaaa", "aaaa"}});
  const std::string word(1000000, 'a');
  Result<std::vector<int32_t>> ids = t.encode(word);
  ASSERT_TRUE(ids.is_ok()) << ids.status().message();
  ASSERT_EQ(ids->size(), 125000u);
  for (int32_t id : ids.value()) ASSERT_EQ(t.token_bytes(id), "aaaaaaaa");
  // Ten million spaces: one piece of whitespace for PCRE2, then 256-way merges of nothing.
  Result<std::vector<int32_t>> spaces = t.encode(std::string(10000000, ' '));
  ASSERT_TRUE(spaces.is_ok()) << spaces.status().message();
  EXPECT_EQ(spaces->size(), 10000000u);
}

// --- decoding -----------------------------------------------------------------------------------------------

TEST(Gpt2Decode, RoundTripsAnyUtf8) {
  const Gpt2Tokenizer t = make({{" ", "t"}, {"h", "e"}, {"\xF0", "\x9F"}, {"\xF0\x9F", "\x98"}, {"\xC3", "\xA9"}});
  std::mt19937 rng(3);
  const std::vector<std::string> alphabet = {"a", " ", "the", "\n", "\u00e9", "\U0001F600", "\u4e2d", "1", "'s", "\u0301", "\t", "!"};
  for (int trial = 0; trial < 500; ++trial) {
    std::string text;
    for (int i = int(rng() % 20); i > 0; --i) text += alphabet[rng() % alphabet.size()];
    Result<std::vector<int32_t>> ids = t.encode(text);
    ASSERT_TRUE(ids.is_ok());
    Result<std::string> back = t.decode(ids.value());
    ASSERT_TRUE(back.is_ok());
    ASSERT_EQ(back.value(), text);
  }
}

TEST(Gpt2Decode, PartsOfACharacterAreBytesOrReplacement) {
  const Gpt2Tokenizer t = make({{"\xF0", "\x9F"}});
  Result<std::vector<int32_t>> ids = t.encode("\U0001F600");  // F0 9F 98 80: "F0 9F", then 98 and 80
  ASSERT_TRUE(ids.is_ok());
  ASSERT_EQ(ids->size(), 3u);
  const std::vector<int32_t> first(ids->begin(), ids->begin() + 1);
  EXPECT_EQ(t.decode_bytes(first).value(), "\xF0\x9F");
  EXPECT_EQ(t.decode(first).value(), "\uFFFD");
  EXPECT_EQ(t.token(first[0]), "\u00f0\u0141");  // ðŁ, as the vocabulary spells it
  EXPECT_EQ(t.decode(ids.value()).value(), "\U0001F600");
}

TEST(Gpt2Decode, IdsOutsideTheVocabularyAreNamed) {
  const Gpt2Tokenizer t = make({});
  const std::vector<int32_t> ids = {5, 256};
  Result<std::string> r = t.decode(ids);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(), "id 256 at position 1: expected 0..255");
  const std::vector<int32_t> negative = {-1};
  EXPECT_FALSE(t.decode_bytes(negative).is_ok());
}

// --- files --------------------------------------------------------------------------------------------------

std::string parse_error(std::string_view vocab, std::string_view merges) {
  Result<Gpt2Tokenizer> t = Gpt2Tokenizer::parse(vocab, merges, "V.json", "M.txt");
  return t.is_ok() ? "(loaded)" : t.status().message();
}

TEST(Gpt2Files, MalformedVocabulariesAreNamed) {
  const Files ok = make_files({{"a", "b"}});
  nlohmann::json v = nlohmann::json::parse(ok.vocab);
  const auto with = [&](const std::string& key, const nlohmann::json& value) {
    nlohmann::json w = v;
    w[key] = value;
    return w.dump();
  };
  EXPECT_EQ(parse_error("{\"a\": 1,", ok.merges).rfind("V.json: parse error at line 1", 0), 0u)
      << parse_error("{\"a\": 1,", ok.merges);
  EXPECT_EQ(parse_error("[1, 2]", ok.merges), "V.json: expected a JSON object of token -> id, got array");
  EXPECT_EQ(parse_error(with("ab", "x"), ok.merges), "V.json: token \"ab\": expected an integer id, got \"x\"");
  EXPECT_EQ(parse_error(with("ab", 1.5), ok.merges), "V.json: token \"ab\": expected an integer id, got 1.5");
  EXPECT_EQ(parse_error(with("ab", 999), ok.merges),
            "V.json: token \"ab\": id 999: expected 0..256 (the ids number the 257 tokens from 0)");
  EXPECT_EQ(parse_error(with("ab", -1), ok.merges),
            "V.json: token \"ab\": id -1: expected 0..256 (the ids number the 257 tokens from 0)");
  const std::string twice = parse_error(with("ab", 7), ok.merges);  // 7 is a byte's id
  EXPECT_NE(twice.find("is also the id of"), std::string::npos) << twice;
  nlohmann::json empty = v;
  empty.erase("ab");
  empty[""] = 256;
  EXPECT_EQ(parse_error(empty.dump(), ok.merges),
            "V.json: token \"\": expected a token of at least one character, got none");
  nlohmann::json chinese = v;
  chinese.erase("ab");
  chinese["\u4e2d"] = 256;
  EXPECT_EQ(parse_error(chinese.dump(), ok.merges),
            "V.json: token \"\u4e2d\": character U+4E2D is none of the 256 characters a byte-level vocabulary spells "
            "bytes with");
  nlohmann::json no_space = v;
  no_space.erase(gpt2_byte_char(' '));
  no_space["ab"] = 32;
  EXPECT_EQ(parse_error(no_space.dump(), ok.merges),
            "V.json: no token for byte 0x20 (\"\u0120\"): expected all 256 one-byte tokens of a byte-level vocabulary");
  EXPECT_EQ(parse_error(std::string(100, '['), ok.merges),
            "V.json: nested deeper than 64 levels of arrays and objects: expected at most 64");
}

TEST(Gpt2Files, MalformedMergesNameTheirLine) {
  const Files f = make_files({{"a", "b"}, {"c", "d"}});
  EXPECT_EQ(parse_error(f.vocab, "#version: 0.2\na b\nc\n"),
            "M.txt:3: expected a merge, two tokens separated by a space, got \"c\"");
  EXPECT_EQ(parse_error(f.vocab, "#version: 0.2\na b c\n"),
            "M.txt:2: expected a merge, two tokens separated by a space, got \"a b c\"");
  EXPECT_EQ(parse_error(f.vocab, "#version: 0.2\na b\n\nc d\n"),
            "M.txt:3: expected a merge, two tokens separated by a space, got an empty line");
  EXPECT_EQ(parse_error(f.vocab, "#version: 0.2\na zz\n"), "M.txt:2: token \"zz\" is not in V.json");
  EXPECT_EQ(parse_error(f.vocab, "#version: 0.2\na b\nb c\n"),
            "M.txt:3: the merge of \"b\" and \"c\", \"bc\", is not in V.json");
  EXPECT_EQ(parse_error(f.vocab, "#version: 0.2\n\xFF b\n"), "M.txt:2: token \"\uFFFD\" is not in V.json");
  // Accepted: no version line, CRLF line ends, no newline at the end, tabs or several spaces between.
  for (const std::string m : {"a b\nc d\n", "#version: 0.2\r\na b\r\nc d\r\n", "#version: 0.2\na b\nc d", "a\tb\nc  d\n"}) {
    Result<Gpt2Tokenizer> t = Gpt2Tokenizer::parse(f.vocab, m);
    ASSERT_TRUE(t.is_ok()) << t.status().message();
    EXPECT_EQ(t->merge_count(), 2u);
    EXPECT_EQ(t->encode("abcd").value().size(), 2u);
  }
}

// A merge given twice has the rank of its later line, as the dict encoder.py builds keeps it.
TEST(Gpt2Files, AMergeGivenTwiceKeepsItsLaterRank) {
  const Files f = make_files({{"a", "b"}, {"b", "c"}});
  const std::string earlier = "a b\nb c\n", later = "a b\nb c\na b\n";
  EXPECT_EQ(tokens_of(Gpt2Tokenizer::parse(f.vocab, "#\n" + earlier).value(), "abc"), (Strings{"ab", "c"}));
  EXPECT_EQ(tokens_of(Gpt2Tokenizer::parse(f.vocab, "#\n" + later).value(), "abc"), (Strings{"a", "bc"}));
}

class Gpt2Folder : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("blocklab_tok_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) const { std::ofstream(dir_ / name, std::ios::binary) << text; }
  std::string error(const std::string& dir) const {
    Result<Gpt2Tokenizer> t = Gpt2Tokenizer::load(dir);
    return t.is_ok() ? "(loaded)" : t.status().message();
  }
  fs::path dir_;
};

TEST_F(Gpt2Folder, EitherPairOfFiles) {
  const Files hf = make_files({{"h", "i"}}), openai = make_files({{"h", "i"}, {" ", "hi"}});
  write("encoder.json", openai.vocab);
  write("vocab.bpe", openai.merges);
  Result<Gpt2Tokenizer> t = Gpt2Tokenizer::load(dir_.string());
  ASSERT_TRUE(t.is_ok()) << t.status().message();
  EXPECT_EQ(t->merge_count(), 2u);
  write("vocab.json", hf.vocab);  // Hugging Face's names come first
  write("merges.txt", hf.merges);
  t = Gpt2Tokenizer::load(dir_.string());
  ASSERT_TRUE(t.is_ok()) << t.status().message();
  EXPECT_EQ(t->merge_count(), 1u);
  EXPECT_EQ(t->vocab_size(), 257);
  EXPECT_EQ(t->token_id("hi"), 256);
  EXPECT_EQ(t->token_id("nope"), -1);
}

TEST_F(Gpt2Folder, MissingAndBadFilesAreNamed) {
  const std::string d = dir_.string();
  const std::string expected = "expected a folder with vocab.json + merges.txt (Hugging Face) or encoder.json + vocab.bpe (OpenAI)";
  EXPECT_EQ(error(d + "/nowhere"), d + "/nowhere: no such folder: " + expected);
  EXPECT_EQ(error(d), d + ": no tokenizer files: " + expected);
  write("file", "x");
  EXPECT_EQ(error(d + "/file"), d + "/file: not a folder: " + expected);
  const Files f = make_files({});
  write("vocab.json", f.vocab);
  EXPECT_EQ(error(d), d + "/merges.txt: cannot open: No such file or directory");
  fs::create_directory(dir_ / "merges.txt");
  EXPECT_EQ(error(d), d + "/merges.txt: expected a regular file, got a directory");
  fs::remove(dir_ / "merges.txt");
  write("merges.txt", "#version: 0.2\nq r\n");
  EXPECT_EQ(error(d), d + "/merges.txt:2: the merge of \"q\" and \"r\", \"qr\", is not in " + d + "/vocab.json");
  write("vocab.json", f.vocab.substr(0, 100));
  EXPECT_EQ(error(d).rfind(d + "/vocab.json: parse error", 0), 0u) << error(d);
  // Larger than a tokenizer file can be: refused after reading no more than the limit (a sparse file here).
  std::ofstream(dir_ / "vocab.json").close();
  fs::resize_file(dir_ / "vocab.json", kMaxTokenizerFileBytes + 1);
  EXPECT_EQ(error(d), d + "/vocab.json: more than 67108864 bytes: expected a tokenizer file (GPT-2's are about 1 MB)");
}

// --- the cache and threads ----------------------------------------------------------------------------------

TEST(Gpt2Cache, ResultsAreTheSameWhenItIsFullAndEmptied) {
  const Gpt2Tokenizer t = make({{"w", "1"}, {"w1", "2"}, {" ", "w"}, {" w", "1"}});
  std::string text;  // 70,000 different numbers, each a piece: more than the cache holds
  for (int i = 0; i < 70000; ++i) text += " w" + std::to_string(i);
  const std::vector<int32_t> first = t.encode(text).value();
  const std::vector<int32_t> second = t.encode(text).value();
  EXPECT_EQ(first, second);
  const Gpt2Tokenizer fresh = make({{"w", "1"}, {"w1", "2"}, {" ", "w"}, {" w", "1"}});
  EXPECT_EQ(fresh.encode(text).value(), first);
}

TEST(Gpt2Threads, OneTokenizerEncodesFromManyThreads) {
  const Gpt2Tokenizer t = make({{" ", "t"}, {"h", "e"}, {" t", "he"}, {"e", "r"}, {"he", "r"}});
  std::vector<std::string> texts;
  for (int k = 0; k < 4; ++k) {
    std::string s;
    for (int i = 0; i < 5000; ++i) s += (i % 3 == k % 3 ? " the" : " her") + std::to_string(i % (7 + k));
    texts.push_back(s);
  }
  std::vector<std::vector<int32_t>> expected;
  for (const std::string& s : texts) expected.push_back(make({{" ", "t"}, {"h", "e"}, {" t", "he"}, {"e", "r"}, {"he", "r"}}).encode(s).value());
  std::vector<std::thread> threads;
  std::vector<int> mismatches(texts.size(), 0);
  for (size_t k = 0; k < texts.size(); ++k)
    threads.emplace_back([&, k] {
      for (int rep = 0; rep < 20; ++rep)
        if (t.encode(texts[k]).value() != expected[k]) ++mismatches[k];
    });
  for (std::thread& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

}  // namespace
}  // namespace blocklab::text
