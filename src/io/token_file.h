// A user's training data (`blocklab train --data FILE`): a text file, read as bytes (the vocabulary is the
// distinct bytes, sorted, as the chars task's), or token ids in a NumPy `.npy` file or a `.safetensors` file
// (one integer array, 1-D, or 2-D read row after row; the vocabulary is the largest id + 1). Everything is
// checked before it is used; an error names the file, what was expected and what it holds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/status.h"

namespace blocklab::io {

// The largest data file read (it is held in memory as int32 ids).
inline constexpr int64_t kMaxTokenFileBytes = int64_t(1) << 30;

struct TokenFile {
  std::vector<int32_t> ids;
  std::optional<std::string> alphabet;  // text: token i is the byte alphabet[i]; ids: none
  int64_t vocab_size = 0;
  std::string format;  // "text", "npy" or "safetensors"
  std::string hash;    // FNV-1a 64 of the file's bytes, 16 hex digits: a resumed run checks it
};

// By the name's ending: ".npy", ".safetensors", anything else is text.
Result<TokenFile> read_token_file(const std::string& path);

// The ids of a `.npy` file's bytes (exposed for tests): format 1.0, 2.0 or 3.0, little-endian or
// byte-order-free integer dtypes (i1 i2 i4 i8 u1 u2 u4 u8), C order (or 1-D), 1 or 2 dimensions.
Result<std::vector<int32_t>> parse_npy_ids(const std::string& bytes, const std::string& where);

}  // namespace blocklab::io
