// libFuzzer harness: GPT-2's tokenizer (text/gpt2_tokenizer.h) on bytes an outsider controls. The first byte
// chooses what the rest is (mod 3):
//   0  text, encoded with a small byte-level vocabulary made here: UTF-8 must encode, decode back to itself, and
//      be covered by its pieces; anything else must be refused with an error, never encoded;
//   1  a tokenizer's two files, vocab JSON and merges, split at the first NUL byte: parse must load or refuse;
//      a loaded one must round-trip a text;
//   2  a merge table and a word of symbols, from the bytes: the heap and the rescan must merge alike.
// A failed property is printed and traps; so does any exception (the tokenizer returns errors, it throws none).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "text/bpe.h"
#include "text/gpt2_tokenizer.h"
#include "text/utf8.h"

using namespace blocklab;

namespace {

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "fuzz_tokenizer: %s\n", what);
  std::fflush(stderr);
  __builtin_trap();
}

std::string spelt(std::string_view bytes) {
  std::string s;
  for (char c : bytes) s += text::gpt2_byte_char(static_cast<uint8_t>(c));
  return s;
}

// The 256 bytes and merges of English, of multi-byte characters' bytes and of spaces.
const text::Gpt2Tokenizer& small_tokenizer() {
  static const text::Gpt2Tokenizer t = [] {
    const std::vector<std::pair<std::string, std::string>> merges = {
        {" ", "t"}, {"h", "e"}, {" t", "he"}, {"i", "n"}, {" ", "a"}, {"e", "r"}, {"o", "n"}, {" ", "s"},
        {"r", "e"}, {"in", "g"}, {" ", " "}, {"  ", "  "}, {"\xC3", "\xA9"}, {"\xE4", "\xB8"}, {"\xF0", "\x9F"},
        {"\xF0\x9F", "\x98"}, {"'", "s"}, {"1", "2"}, {"\n", "\n"}, {" ", "\xC3\xA9"}};
    nlohmann::json v = nlohmann::json::object();
    for (int b = 0; b < 256; ++b) v[text::gpt2_byte_char(uint8_t(b))] = b;
    std::string m = "#version: 0.2\n";
    for (const auto& [l, r] : merges) {
      if (!v.contains(spelt(l + r))) v[spelt(l + r)] = int(v.size());
      m += spelt(l) + " " + spelt(r) + "\n";
    }
    Result<text::Gpt2Tokenizer> r = text::Gpt2Tokenizer::parse(v.dump(), m);
    if (!r) broken(r.status().message().c_str());
    return std::move(r).value();
  }();
  return t;
}

void round_trip(const text::Gpt2Tokenizer& t, std::string_view s) {
  const bool utf8 = text::utf8_invalid_offset(s) == s.size();
  Result<std::vector<int32_t>> ids = t.encode(s);
  if (ids.is_ok() != utf8) broken(utf8 ? "UTF-8 text was refused" : "text that is not UTF-8 was encoded");
  if (!utf8) return;
  Result<std::string> back = t.decode(ids.value());
  if (!back || back.value() != s) broken("decode(encode(text)) is not the text");
  Result<std::vector<std::string_view>> pieces = text::gpt2_pretokenize(s);
  if (!pieces) broken("the pre-tokenizer refused UTF-8 text");
  std::string joined;
  for (std::string_view p : pieces.value()) {
    if (p.empty()) broken("an empty piece");
    joined += p;
  }
  if (joined != s) broken("the pieces do not cover the text");
}

void merges_agree(std::string_view in) {
  if (in.size() < 2) return;
  const int32_t alphabet = 2 + static_cast<uint8_t>(in[0]) % 4;
  const size_t n_merges = static_cast<uint8_t>(in[1]) % 32;
  in.remove_prefix(2);
  text::MergeTable table;
  int32_t symbols = alphabet;
  std::set<int32_t> ranks;  // a merges file's ranks are its line numbers: each names one pair (MergeTable's premise)
  for (size_t i = 0; i < n_merges && in.size() >= 3; ++i, in.remove_prefix(3)) {
    const auto b = [&](size_t k) { return static_cast<uint8_t>(in[k]); };
    const int32_t left = int32_t(b(0) % symbols), right = int32_t(b(1) % symbols), rank = int32_t(b(2));
    if (!ranks.insert(rank).second) continue;     // ranks in any order, but never one twice
    table.set(left, right, {rank, symbols++});  // (sequenced: the operands are taken before the new symbol)
  }
  std::vector<int32_t> word;
  for (char c : in) word.push_back(int32_t(static_cast<uint8_t>(c) % alphabet));
  std::vector<int32_t> by_heap = word;
  text::bpe_merge_rescan(word, table);
  text::bpe_merge_heap(by_heap, table);
  if (word != by_heap) broken("the heap and the rescan merge differently");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    small_tokenizer();  // the one-time set-up (the replay calls an empty input first)
    return 0;
  }
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  fuzz::guarded<fuzz::NoExceptionExpected>("fuzz_tokenizer", [&] {
    switch (data[0] % 3) {
      case 0:
        round_trip(small_tokenizer(), in);
        break;
      case 1: {
        const size_t nul = in.find('\0');
        const std::string_view vocab = in.substr(0, nul), merges = nul == in.npos ? "" : in.substr(nul + 1);
        Result<text::Gpt2Tokenizer> t = text::Gpt2Tokenizer::parse(vocab, merges);
        if (t) round_trip(t.value(), "the cat's 12 \xC3\xA9t\xC3\xA9  \n\n\xF0\x9F\x98\x80");
        break;
      }
      default:
        merges_agree(in);
    }
  });
  return 0;
}
