// GPT-2's tokenizer: byte-level BPE exactly as OpenAI's encoder.py computes it (docs/gpt2.md, "Tokenizer").
//
//   1. The text is split by GPT-2's pattern
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      (PCRE2, compiled once, with \s spelt out as the Unicode White_Space characters, which is what the
//      `regex` module that encoder.py imports matches).
//   2. Each piece's UTF-8 bytes become the 256 printable characters the vocabulary spells bytes with
//      (space is "Ġ"), here directly the ids of those one-character tokens.
//   3. Pairs merge by rank (text/bpe.h); each piece's result is cached.
// "<|endoftext|>" in the text is text, as in encoder.py (three pieces); only its id is special to the model.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"

namespace blocklab::text {

// encode() refuses longer text: 64 MiB.
inline constexpr size_t kMaxTextBytes = size_t(64) << 20;
// A vocabulary or merges file larger than this is refused before it is read (GPT-2's are 1 MB and 0.5 MB).
inline constexpr size_t kMaxTokenizerFileBytes = size_t(64) << 20;

// GPT-2's pre-tokenizer alone: the pieces of `text`, each a view into it, in order; they cover it.
// Errors: text that is not UTF-8 (the offset of the first bad byte), longer than kMaxTextBytes.
Result<std::vector<std::string_view>> gpt2_pretokenize(std::string_view text);

// The character (as UTF-8) that stands for byte `b` in a byte-level vocabulary: the printable bytes of Latin-1
// stand for themselves, the other 68 (controls, space, DEL, NBSP, soft hyphen) for U+0100.. in byte order.
const std::string& gpt2_byte_char(uint8_t b);

// A vocabulary (token -> id) and its merges. Immutable once made; copies share the tables; encode and decode
// may be called from any number of threads at once.
class Gpt2Tokenizer {
 public:
  // A folder with vocab.json + merges.txt (Hugging Face's names), or else encoder.json + vocab.bpe (OpenAI's
  // release). Errors name the file, and the line of a merges file.
  static Result<Gpt2Tokenizer> load(const std::string& dir);
  static Result<Gpt2Tokenizer> load_files(const std::string& vocab_path, const std::string& merges_path);
  // From the files' contents; the names are what errors call them.
  //   vocab: a JSON object of token -> id, ids 0..N-1 each once, every token spelt in byte characters, all
  //          256 one-byte tokens present.
  //   merges: a first line "#version..." (optional), then one merge a line, "left right", both and their
  //          concatenation tokens of the vocabulary; the line's order is the rank. CRLF line ends are accepted.
  static Result<Gpt2Tokenizer> parse(std::string_view vocab_json, std::string_view merges,
                                     const std::string& vocab_name = "vocab.json",
                                     const std::string& merges_name = "merges.txt");

  // The ids of `text` (UTF-8). Errors as gpt2_pretokenize's.
  Result<std::vector<int32_t>> encode(std::string_view text) const;
  // The bytes the ids stand for, concatenated: not UTF-8 where the ids cut a character.
  // Error: an id outside 0..vocab_size()-1 (named with its position).
  Result<std::string> decode_bytes(std::span<const int32_t> ids) const;
  // As text: decode_bytes with what is not UTF-8 replaced by U+FFFD, as encoder.py's decode(errors="replace").
  Result<std::string> decode(std::span<const int32_t> ids) const;

  int32_t vocab_size() const;
  size_t merge_count() const;
  // REQUIRES: 0 <= id < vocab_size()
  const std::string& token(int32_t id) const;        // as the vocabulary spells it: "Ġworld"
  const std::string& token_bytes(int32_t id) const;  // what it stands for: " world"
  // The id of a token as the vocabulary spells it, or -1.
  int32_t token_id(std::string_view token) const;


 private:
  struct Tables;
  explicit Gpt2Tokenizer(std::shared_ptr<Tables> tables) : t_(std::move(tables)) {}
  std::shared_ptr<Tables> t_;
};

}  // namespace blocklab::text
