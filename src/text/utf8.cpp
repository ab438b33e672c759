#include "text/utf8.h"

#include <cstdint>

namespace blocklab::text {

namespace {

// How many bytes of a character start at s[i] and are well formed so far, and how many it needs:
// complete when prefix == need. A byte that starts no character has need 0.
struct Prefix {
  size_t prefix = 0, need = 0;
};

Prefix scan(std::string_view s, size_t i) {
  const auto at = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t b0 = at(i);
  if (b0 < 0x80) return {1, 1};
  size_t need = 0;
  uint8_t lo = 0x80, hi = 0xBF;  // the range of the second byte; every later one is 80..BF
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;  // no overlong forms
    if (b0 == 0xF4) hi = 0x8F;  // nothing past U+10FFFF
  } else {
    return {1, 0};  // 80..C1, F5..FF
  }
  size_t k = 1;
  for (; k < need && i + k < s.size(); ++k) {
    const uint8_t b = at(i + k);
    const bool ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
  }
  return {k, need};
}

}  // namespace

size_t utf8_char_length(std::string_view s, size_t i) {
  const Prefix p = scan(s, i);
  return p.prefix == p.need ? p.need : 0;
}

size_t utf8_invalid_offset(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {  // the common case, without the call
      ++i;
      continue;
    }
    const size_t n = utf8_char_length(s, i);
    if (n == 0) return i;
    i += n;
  }
  return s.size();
}

std::string utf8_replace_invalid(std::string_view s) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const Prefix p = scan(s, i);
    if (p.prefix == p.need) {
      out.append(s.substr(i, p.need));
    } else {
      out.append(kReplacement);  // one for the maximal subpart: the lead byte and the continuations that fit
    }
    i += p.prefix;
  }
  return out;
}

}  // namespace blocklab::text
