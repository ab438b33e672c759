// Well-formed UTF-8 (Unicode's table 3-7: no overlong forms, no surrogates, nothing past U+10FFFF): the
// tokenizer's check of its input, and the replacement of what is not UTF-8 when ids are shown as text.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace blocklab::text {

// The length of the well-formed character that starts at s[i] (1 to 4), or 0 when none does.
// REQUIRES: i < s.size()
size_t utf8_char_length(std::string_view s, size_t i);

// The offset of the first byte that starts no well-formed character, or s.size() when s is UTF-8.
size_t utf8_invalid_offset(std::string_view s);

// s with each maximal ill-formed subsequence (a byte that starts no character, or the start of one cut short)
// replaced by U+FFFD, as Python's bytes.decode("utf-8", errors="replace") does: GPT-2's decode.
std::string utf8_replace_invalid(std::string_view s);

}  // namespace blocklab::text
