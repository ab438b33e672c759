#include "text/gpt2_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "io/json_limits.h"
#include "io/safetensors.h"
#include "text/bpe.h"
#include "text/utf8.h"

namespace blocklab::text {

namespace {

using json = nlohmann::json;

// --- The pre-tokenizer -------------------------------------------------------------------------------------

// \s as the `regex` module matches it (encoder.py's `import regex as re`): Unicode's White_Space, the 25
// characters below. Spelt out because engines differ: JavaScript's \s adds U+FEFF and lacks U+0085, and PCRE2
// 10.42's own \s (with UCP) adds U+180E; docs/gpt2.md lists what that changes.
#define BLOCKLAB_WS "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
constexpr char kPattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" BLOCKLAB_WS "\\p{L}\\p{N}]+"
    "|[" BLOCKLAB_WS "]+(?![^" BLOCKLAB_WS "])|[" BLOCKLAB_WS "]+";
#undef BLOCKLAB_WS

// GPT-2's pattern, compiled (and JIT-compiled where PCRE2 can) once per process.
class Pattern {
 public:
  static const Pattern& get() {
    static const Pattern p;
    return p;
  }
  Pattern(const Pattern&) = delete;
  Pattern& operator=(const Pattern&) = delete;
  ~Pattern() { pcre2_code_free(code_); }
  const pcre2_code* code() const { return code_; }
  const std::string& error() const { return error_; }
  static std::string message(int code) {
    PCRE2_UCHAR buf[256];
    return pcre2_get_error_message(code, buf, sizeof buf) < 0 ? "PCRE2 error " + std::to_string(code)
                                                               : std::string(reinterpret_cast<const char*>(buf));
  }

 private:
  Pattern() {
    int err = 0;
    PCRE2_SIZE at = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                          &err, &at, nullptr);
    if (code_ == nullptr) {
      error_ = "GPT-2's pattern does not compile at " + std::to_string(at) + ": " + message(err);
      return;
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // without JIT support pcre2_match interprets: slower, the same
  }
  pcre2_code* code_ = nullptr;
  std::string error_;
};

Status match_error(int rc, size_t offset) {
  return Status::error("GPT-2's pre-tokenizer failed at byte " + std::to_string(offset) + ": " + Pattern::message(rc));
}

std::string hex_bytes(std::string_view s, size_t at, size_t n) {
  std::string out;
  for (size_t k = at; k < s.size() && k < at + n; ++k) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%s0x%02X", out.empty() ? "" : " ", static_cast<unsigned char>(s[k]));
    out += buf;
  }
  return out;
}

Status check_text(std::string_view text) {
  if (text.size() > kMaxTextBytes)
    return Status::error("text of " + std::to_string(text.size()) + " bytes: expected at most " +
                         std::to_string(kMaxTextBytes) + " bytes");
  const size_t bad = utf8_invalid_offset(text);
  if (bad != text.size())
    return Status::error("expected UTF-8 text, got bytes that are not UTF-8 at byte " + std::to_string(bad) + " (" +
                         hex_bytes(text, bad, 4) + ")");
  return Status::ok();
}

// Calls piece(view) for each match of GPT-2's pattern, in order. REQUIRES: check_text(text) passed.
template <typename F>
Status for_each_piece(std::string_view text, F&& piece) {
  const Pattern& p = Pattern::get();
  if (p.code() == nullptr) return Status::error(p.error());
  if (text.empty()) return Status::ok();
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(p.code(), nullptr), &pcre2_match_data_free);
  if (!md) throw std::bad_alloc();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t offset = 0;
  while (offset < text.size()) {
    // The text was checked above: PCRE2 need not check it again at every match (quadratic).
    const int rc = pcre2_match(p.code(), subject, text.size(), offset, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;  // not reached: every character is a letter, a number, a space or other
    if (rc < 0) return match_error(rc, offset);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    if (ov[1] <= ov[0]) return match_error(PCRE2_ERROR_INTERNAL, ov[0]);  // every alternative takes a character
    piece(text.substr(ov[0], ov[1] - ov[0]));
    offset = ov[1];
  }
  return Status::ok();
}

// --- Bytes as characters ------------------------------------------------------------------------------------

bool printable_byte(int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

std::string utf8_of(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else {  // the byte characters end at U+0143
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

struct ByteChars {
  std::array<std::string, 256> of_byte;  // byte -> its character, UTF-8
  std::array<int, 0x144> byte_of;        // code point -> byte, or -1
  ByteChars() {
    byte_of.fill(-1);
    uint32_t extra = 0;
    for (int b = 0; b < 256; ++b) {
      const uint32_t cp = printable_byte(b) ? uint32_t(b) : 256 + extra++;
      of_byte[b] = utf8_of(cp);
      byte_of[cp] = b;
    }
  }
  static const ByteChars& get() {
    static const ByteChars t;
    return t;
  }
};

// The code point of the well-formed character at s[i] of length n.
uint32_t code_point(std::string_view s, size_t i, size_t n) {
  const auto b = [&](size_t k) { return uint32_t(static_cast<unsigned char>(s[i + k])); };
  switch (n) {
    case 1: return b(0);
    case 2: return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3: return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default: return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

// --- Loading ------------------------------------------------------------------------------------------------

// A token, a line or a value in an error: JSON-quoted (so control characters and bytes that are not UTF-8 show),
// cut to about 60 bytes.
std::string quote_text(std::string_view s) {
  const bool cut = s.size() > 60;
  std::string q = json(std::string(s.substr(0, 60))).dump(-1, ' ', false, json::error_handler_t::replace);
  return cut ? q + "..." : q;
}

Result<std::string> read_text_file(const std::string& path) {
  BLOCKLAB_RETURN_IF_ERROR(io::expect_regular_file(path));
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error(path + ": cannot open: " + std::strerror(errno));
  std::string text;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, size_t(in.gcount()));
    if (text.size() > kMaxTokenizerFileBytes)
      return Status::error(path + ": more than " + std::to_string(kMaxTokenizerFileBytes) +
                           " bytes: expected a tokenizer file (GPT-2's are about 1 MB)");
  }
  if (in.bad()) return Status::error(path + ": read failed: " + std::strerror(errno));
  return text;
}

// Splits a merges line at its runs of spaces and tabs (as Python's str.split(): no byte character is a space).
std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

// Hash and equality that look a std::string key up by a string_view, without a copy.
struct TransparentHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// The cache of merged pieces: bounded (emptied when full), pieces up to kCacheMaxBytes.
constexpr size_t kCacheMaxEntries = size_t(1) << 16;
constexpr size_t kCacheMaxBytes = 128;

}  // namespace

struct Gpt2Tokenizer::Tables {
  std::vector<std::string> tokens;  // id -> the vocabulary's spelling
  std::vector<std::string> bytes;   // id -> the bytes it stands for
  std::unordered_map<std::string, int32_t, TransparentHash, std::equal_to<>> ids;  // spelling -> id
  std::array<int32_t, 256> byte_id{};                                              // byte -> its token's id
  MergeTable merges;
  size_t merge_lines = 0;

  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>, TransparentHash, std::equal_to<>> cache;

  // Appends the ids of one piece.
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
    if (piece.size() == 1) {
      out.push_back(byte_id[static_cast<unsigned char>(piece[0])]);
      return;
    }
    const bool cacheable = piece.size() <= kCacheMaxBytes;
    if (cacheable) {
      std::lock_guard<std::mutex> lock(cache_mu);
      const auto it = cache.find(piece);
      if (it != cache.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> symbols(piece.size());
    for (size_t i = 0; i < piece.size(); ++i) symbols[i] = byte_id[static_cast<unsigned char>(piece[i])];
    bpe_merge(symbols, merges);
    out.insert(out.end(), symbols.begin(), symbols.end());
    if (cacheable) {
      std::lock_guard<std::mutex> lock(cache_mu);
      if (cache.size() >= kCacheMaxEntries) cache.clear();
      cache.emplace(std::string(piece), std::move(symbols));
    }
  }
};

Result<std::vector<std::string_view>> gpt2_pretokenize(std::string_view text) {
  BLOCKLAB_RETURN_IF_ERROR(check_text(text));
  std::vector<std::string_view> pieces;
  BLOCKLAB_RETURN_IF_ERROR(for_each_piece(text, [&](std::string_view p) { pieces.push_back(p); }));
  return pieces;
}

const std::string& gpt2_byte_char(uint8_t b) { return ByteChars::get().of_byte[b]; }

Result<Gpt2Tokenizer> Gpt2Tokenizer::parse(std::string_view vocab_json, std::string_view merges,
                                           const std::string& vocab_name, const std::string& merges_name) {
  auto t = std::make_shared<Tables>();
  const ByteChars& bc = ByteChars::get();

  // The vocabulary: token -> id.
  Result<json> parsed = io::parse_json_limited(vocab_json);
  if (!parsed) return Status::error(vocab_name + ": " + parsed.status().message());
  const json& vocab = parsed.value();
  if (!vocab.is_object())
    return Status::error(vocab_name + ": expected a JSON object of token -> id, got " + std::string(vocab.type_name()));
  if (vocab.size() > size_t(std::numeric_limits<int32_t>::max()))
    return Status::error(vocab_name + ": " + std::to_string(vocab.size()) + " tokens: expected fewer than 2^31");
  const int64_t n = int64_t(vocab.size());
  t->tokens.assign(size_t(n), std::string());
  t->bytes.assign(size_t(n), std::string());
  std::vector<char> seen(size_t(n), 0);
  t->ids.reserve(size_t(n));
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const std::string& token = it.key();
    const json& v = it.value();
    const std::string where = vocab_name + ": token " + quote_text(token);
    if (!v.is_number_integer())
      return Status::error(where + ": expected an integer id, got " +
                           (v.is_structured() ? std::string(v.type_name()) : v.dump()));
    const int64_t id = v.get<int64_t>();
    if (id < 0 || id >= n)
      return Status::error(where + ": id " + std::to_string(id) + ": expected 0.." + std::to_string(n - 1) +
                           " (the ids number the " + std::to_string(n) + " tokens from 0)");
    if (seen[size_t(id)])
      return Status::error(where + ": id " + std::to_string(id) + " is also the id of " + quote_text(t->tokens[size_t(id)]) +
                           ": expected each id once");
    if (token.empty()) return Status::error(where + ": expected a token of at least one character, got none");
    std::string bytes;
    for (size_t i = 0; i < token.size();) {  // the JSON parser gave UTF-8
      const size_t len = utf8_char_length(token, i);
      const uint32_t cp = code_point(token, i, len == 0 ? 1 : len);
      if (len == 0 || cp >= bc.byte_of.size() || bc.byte_of[cp] < 0) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "U+%04X", cp);
        return Status::error(where + ": character " + buf +
                             " is none of the 256 characters a byte-level vocabulary spells bytes with");
      }
      bytes += char(bc.byte_of[cp]);
      i += len;
    }
    seen[size_t(id)] = 1;
    t->tokens[size_t(id)] = token;
    t->bytes[size_t(id)] = std::move(bytes);
    t->ids.emplace(token, int32_t(id));
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = t->ids.find(bc.of_byte[b]);
    if (it == t->ids.end()) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "0x%02X", b);
      return Status::error(vocab_name + ": no token for byte " + buf + " (" + quote_text(bc.of_byte[b]) +
                           "): expected all 256 one-byte tokens of a byte-level vocabulary");
    }
    t->byte_id[b] = it->second;
  }

  // The merges, one a line; the order is the rank.
  size_t pos = 0, line_no = 0;
  int32_t rank = 0;
  while (pos < merges.size()) {
    size_t end = merges.find('\n', pos);
    if (end == std::string_view::npos) end = merges.size();
    std::string_view line = merges.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line_no == 1 && line.starts_with("#")) continue;  // "#version: 0.2"
    const std::string where = merges_name + ":" + std::to_string(line_no);
    const std::vector<std::string_view> f = fields(line);
    if (f.size() != 2)
      return Status::error(where + ": expected a merge, two tokens separated by a space, got " +
                           (line.empty() ? std::string("an empty line") : quote_text(line)));
    const auto left = t->ids.find(f[0]), right = t->ids.find(f[1]);
    for (const auto& [it, s] : {std::pair{left, f[0]}, std::pair{right, f[1]}})
      if (it == t->ids.end()) return Status::error(where + ": token " + quote_text(s) + " is not in " + vocab_name);
    std::string joined(f[0]);
    joined += f[1];
    const auto merged = t->ids.find(joined);
    if (merged == t->ids.end())
      return Status::error(where + ": the merge of " + quote_text(f[0]) + " and " + quote_text(f[1]) + ", " + quote_text(joined) +
                           ", is not in " + vocab_name);
    if (rank == std::numeric_limits<int32_t>::max())
      return Status::error(where + ": expected fewer than 2^31 merges");
    t->merges.set(left->second, right->second, Merge{rank++, merged->second});
  }
  t->merge_lines = size_t(rank);
  return Gpt2Tokenizer(std::move(t));
}

Result<Gpt2Tokenizer> Gpt2Tokenizer::load_files(const std::string& vocab_path, const std::string& merges_path) {
  Result<std::string> vocab = read_text_file(vocab_path);
  if (!vocab) return vocab.status();
  Result<std::string> merges = read_text_file(merges_path);
  if (!merges) return merges.status();
  return parse(vocab.value(), merges.value(), vocab_path, merges_path);
}

Result<Gpt2Tokenizer> Gpt2Tokenizer::load(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  const std::string expected = "expected a folder with vocab.json + merges.txt (Hugging Face) or encoder.json + vocab.bpe (OpenAI)";
  if (ec || !fs::exists(st)) return Status::error(dir + ": no such folder: " + expected);
  if (!fs::is_directory(st)) return Status::error(dir + ": not a folder: " + expected);
  const fs::path d(dir);
  for (const auto& [vocab, merges] : {std::pair{"vocab.json", "merges.txt"}, std::pair{"encoder.json", "vocab.bpe"}})
    if (fs::exists(d / vocab, ec)) return load_files((d / vocab).string(), (d / merges).string());
  return Status::error(dir + ": no tokenizer files: " + expected);
}

Result<std::vector<int32_t>> Gpt2Tokenizer::encode(std::string_view text) const {
  BLOCKLAB_RETURN_IF_ERROR(check_text(text));
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  BLOCKLAB_RETURN_IF_ERROR(for_each_piece(text, [&](std::string_view piece) { t_->encode_piece(piece, ids); }));
  return ids;
}

Result<std::string> Gpt2Tokenizer::decode_bytes(std::span<const int32_t> ids) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size())
      return Status::error("id " + std::to_string(ids[i]) + " at position " + std::to_string(i) + ": expected 0.." +
                           std::to_string(vocab_size() - 1));
    out += t_->bytes[size_t(ids[i])];
  }
  return out;
}

Result<std::string> Gpt2Tokenizer::decode(std::span<const int32_t> ids) const {
  Result<std::string> bytes = decode_bytes(ids);
  if (!bytes) return bytes;
  return utf8_replace_invalid(bytes.value());
}

int32_t Gpt2Tokenizer::vocab_size() const { return int32_t(t_->tokens.size()); }
size_t Gpt2Tokenizer::merge_count() const { return t_->merge_lines; }
const std::string& Gpt2Tokenizer::token(int32_t id) const { return t_->tokens[size_t(id)]; }
const std::string& Gpt2Tokenizer::token_bytes(int32_t id) const { return t_->bytes[size_t(id)]; }
int32_t Gpt2Tokenizer::token_id(std::string_view token) const {
  const auto it = t_->ids.find(token);
  return it == t_->ids.end() ? -1 : it->second;
}

}  // namespace blocklab::text
