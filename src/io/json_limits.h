// Parsing JSON that comes from outside (request bodies, safetensors headers, config files, training
// metadata): one place that bounds what the parser will build. nlohmann::json parses iteratively, but
// printing, copying and comparing a value recurse, so a body nested 60,000 deep (120 KB) would overflow
// the stack later; the depth is refused while parsing instead, before anything deep is built.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "engine/status.h"

namespace blocklab::io {

// Arrays and objects nested deeper than this are refused (a model config is 1 deep, a request 4).
inline constexpr int kMaxJsonDepth = 64;

// Parses `text` as one JSON value. Errors (one line, without a "where": the caller prefixes it):
//   "nested deeper than 64 levels of arrays and objects: expected at most 64"
//   the parser's reason, e.g. "parse error at line 1, column 7: syntax error while parsing value - ...",
//   "number overflow parsing '1e400'" (a number too big for a double), invalid UTF-8
// Never throws.
Result<nlohmann::json> parse_json_limited(std::string_view text, int max_depth = kMaxJsonDepth);

// A json::exception's text without its "[json.exception.type_error.302] " prefix.
std::string json_error_text(const nlohmann::json::exception& e);

}  // namespace blocklab::io
