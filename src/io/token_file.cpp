#include "io/token_file.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <regex>

#include "io/safetensors.h"

namespace blocklab::io {

namespace {

std::string fnv1a_hex(const std::string& bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// A value of the header dict: 'key': <value> up to the next top-level comma or the closing brace.
std::optional<std::string> npy_field(const std::string& header, const std::string& key) {
  const std::string quoted[] = {"'" + key + "'", "\"" + key + "\""};
  for (const std::string& q : quoted) {
    const size_t at = header.find(q);
    if (at == std::string::npos) continue;
    size_t i = header.find(':', at + q.size());
    if (i == std::string::npos) return std::nullopt;
    ++i;
    int depth = 0;
    size_t end = i;
    for (; end < header.size(); ++end) {
      const char c = header[end];
      if (c == '(' || c == '[') ++depth;
      else if (c == ')' || c == ']') --depth;
      else if ((c == ',' || c == '}') && depth == 0) break;
    }
    std::string v = header.substr(i, end - i);
    v.erase(0, v.find_first_not_of(" \t"));
    v.erase(v.find_last_not_of(" \t") + 1);
    return v;
  }
  return std::nullopt;
}

}  // namespace

Result<std::vector<int32_t>> parse_npy_ids(const std::string& b, const std::string& where) {
  auto bad = [&](const std::string& what) { return Status::error(where + ": " + what); };
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0)
    return bad("expected a NumPy .npy file (magic \\x93NUMPY), got other bytes");
  const int major = static_cast<unsigned char>(b[6]);
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = size_t(static_cast<unsigned char>(b[8])) | size_t(static_cast<unsigned char>(b[9])) << 8;
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) return bad("the .npy header is cut short");
    for (int i = 0; i < 4; ++i) header_len |= size_t(static_cast<unsigned char>(b[8 + i])) << (8 * i);
    offset = 12;
  } else {
    return bad(".npy format version: expected 1, 2 or 3, got " + std::to_string(major));
  }
  if (header_len > b.size() - offset) return bad("the .npy header is longer than the file");
  const std::string header = b.substr(offset, header_len);
  const size_t data = offset + header_len;

  const std::optional<std::string> descr = npy_field(header, "descr");
  const std::optional<std::string> fortran = npy_field(header, "fortran_order");
  const std::optional<std::string> shape_text = npy_field(header, "shape");
  if (!descr || !fortran || !shape_text) return bad("the .npy header: expected 'descr', 'fortran_order' and 'shape'");
  static const std::regex kDescr(R"(^['"]([<|=])([iu])([1248])['"]$)");
  std::smatch m;
  if (!std::regex_match(*descr, m, kDescr))
    return bad("dtype: expected little-endian integer ids (<i4, <i8, <u2, |u1, ...), got " + *descr);
  const bool is_signed = m[2] == "i";
  const size_t width = size_t(m[3].str()[0] - '0');
  std::vector<int64_t> shape;
  static const std::regex kDim(R"(\d+)");
  for (auto it = std::sregex_iterator(shape_text->begin(), shape_text->end(), kDim); it != std::sregex_iterator(); ++it) {
    if (it->str().size() > 12) return bad("shape: a dimension too large: " + *shape_text);
    shape.push_back(std::stoll(it->str()));
  }
  if (shape.empty() || shape.size() > 2)
    return bad("shape: expected 1 or 2 dimensions (a token stream, or rows of tokens), got " + *shape_text);
  if (shape.size() == 2 && *fortran != "False")
    return bad("fortran_order: expected False for a 2-D array (rows of tokens, C order), got " + *fortran);
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return bad("shape: too many elements");
    n *= d;
  }
  if (uint64_t(n) > (b.size() - data) / width || uint64_t(n) * width != b.size() - data)
    return bad("data: expected " + std::to_string(n) + " values of " + std::to_string(width) + " bytes (shape " +
               *shape_text + "), got " + std::to_string(b.size() - data) + " bytes");
  std::vector<int32_t> ids(static_cast<size_t>(n));
  const unsigned char* p = reinterpret_cast<const unsigned char*>(b.data() + data);
  for (int64_t i = 0; i < n; ++i) {
    uint64_t u = 0;
    for (size_t k = 0; k < width; ++k) u |= uint64_t(p[size_t(i) * width + k]) << (8 * k);
    int64_t v;
    if (is_signed) {
      const unsigned shift = unsigned(64 - 8 * width);
      v = int64_t(u << shift) >> shift;  // sign-extend
    } else {
      if (u > uint64_t(std::numeric_limits<int64_t>::max())) v = std::numeric_limits<int64_t>::max();
      else v = int64_t(u);
    }
    if (v < 0 || v > std::numeric_limits<int32_t>::max())
      return bad("ids[" + std::to_string(i) + "]: expected a token id in 0.." +
                 std::to_string(std::numeric_limits<int32_t>::max()) + ", got " + std::to_string(v));
    ids[size_t(i)] = int32_t(v);
  }
  return ids;
}

Result<TokenFile> read_token_file(const std::string& path) {
  BLOCKLAB_RETURN_IF_ERROR(expect_regular_file(path));
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error(path + ": cannot open: " + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) return Status::error(path + ": cannot read its size");
  if (size > kMaxTokenFileBytes)
    return Status::error(path + ": expected a data file of at most " + std::to_string(kMaxTokenFileBytes) +
                         " bytes, got " + std::to_string(size));
  in.seekg(0);
  std::string bytes(static_cast<size_t>(size), '\0');
  if (!in.read(bytes.data(), size)) return Status::error(path + ": read failed: " + std::strerror(errno));

  TokenFile f;
  f.hash = fnv1a_hex(bytes);
  if (ends_with(path, ".npy")) {
    f.format = "npy";
    Result<std::vector<int32_t>> ids = parse_npy_ids(bytes, path);
    if (!ids) return ids.status();
    f.ids = std::move(ids.value());
  } else if (ends_with(path, ".safetensors")) {
    f.format = "safetensors";
    const std::span<const uint8_t> raw(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    Result<SafetensorsFile> st = parse_safetensors(raw, path);
    if (!st) return st.status();
    const StoredTensor* t = st->find("tokens");
    if (!t && st->tensors.size() == 1) t = &st->tensors[0];
    if (!t)
      return Status::error(path + ": expected one tensor, or one named \"tokens\", got " +
                           std::to_string(st->tensors.size()) + " tensors");
    if (t->shape.empty() || t->shape.size() > 2)
      return Status::error(path + ": tensor '" + t->name + "': expected 1 or 2 dimensions, got " +
                           std::to_string(t->shape.size()));
    if (t->dtype == DType::F64 || t->dtype == DType::F32 || t->dtype == DType::F16 || t->dtype == DType::BF16)
      return Status::error(path + ": tensor '" + t->name + "': dtype: expected integer token ids (I64, I32, I16, I8, U8), got " +
                           dtype_name(t->dtype));
    Result<std::vector<int32_t>> ids = to_int_ids(*t, path);
    if (!ids) return ids.status();
    for (size_t i = 0; i < ids->size(); ++i)
      if ((*ids)[i] < 0)
        return Status::error(path + ": tensor '" + t->name + "'[" + std::to_string(i) +
                             "]: expected a token id >= 0, got " + std::to_string((*ids)[i]));
    f.ids = std::move(ids.value());
  } else {
    f.format = "text";
    std::string alphabet = bytes;
    std::sort(alphabet.begin(), alphabet.end(),
              [](char a, char b) { return static_cast<unsigned char>(a) < static_cast<unsigned char>(b); });
    alphabet.erase(std::unique(alphabet.begin(), alphabet.end()), alphabet.end());
    int32_t index[256];
    for (size_t i = 0; i < alphabet.size(); ++i) index[static_cast<unsigned char>(alphabet[i])] = int32_t(i);
    f.ids.reserve(bytes.size());
    for (unsigned char c : bytes) f.ids.push_back(index[c]);
    f.alphabet = std::move(alphabet);
  }
  if (f.ids.empty()) return Status::error(path + ": expected at least one token, got an empty " + f.format + " file");
  f.vocab_size = f.alphabet ? int64_t(f.alphabet->size()) : int64_t(*std::max_element(f.ids.begin(), f.ids.end())) + 1;
  return f;
}

}  // namespace blocklab::io
