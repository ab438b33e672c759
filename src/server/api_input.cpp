#include "server/api_input.h"

#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "io/json_limits.h"

namespace blocklab::server {

json ApiError::body() const {
  return {{"error", {{"code", code}, {"message", what()}, {"field", field.empty() ? json(nullptr) : json(field)}}}};
}

namespace {

// Appends at most about `budget` characters of `v`, descending at most 8 levels (deeper values print
// as [...] / {...}): the message shows 60 characters, so the value is never printed whole.
void brief(const json& v, std::string& out, size_t budget, int depth) {
  if (out.size() > budget) return;
  if (!v.is_structured()) {
    std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);  // user bytes may not be UTF-8
    out += s.size() > budget ? s.substr(0, budget) : s;
    return;
  }
  const bool array = v.is_array();
  if (depth >= 8 && !v.empty()) {
    out += array ? "[...]" : "{...}";
    return;
  }
  out += array ? '[' : '{';
  bool first = true;
  for (auto it = v.begin(); it != v.end() && out.size() <= budget; ++it) {
    if (!first) out += ',';
    first = false;
    if (!array) out += json(it.key()).dump(-1, ' ', false, json::error_handler_t::replace) + ':';
    brief(*it, out, budget, depth + 1);
  }
  out += array ? ']' : '}';
}

std::string shorten(const json& got) {
  std::string s;
  brief(got, s, 64, 0);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// A number that float32 holds (the engine computes in float32): finite and |v| <= FLT_MAX.
void check_float32(const json& x, const std::string& field) {
  if (!x.is_number()) bad_field(field, "a finite number", x);
  const double v = x.get<double>();
  if (!std::isfinite(v) || std::fabs(v) > double(FLT_MAX))
    bad_field(field, "a finite number within float32 (|v| <= 3.4e38)", x);
}

std::string path(const std::string& prefix, const std::string& name) { return prefix.empty() ? name : prefix + "." + name; }

}  // namespace

void bad_field(const std::string& field, const std::string& expected, const json& got) {
  throw ApiError(400, "bad_request", field + ": expected " + expected + ", got " + shorten(got), field);
}

json parse_body(const std::string& body) {
  Result<json> parsed = io::parse_json_limited(body, io::kMaxJsonDepth);
  if (!parsed) {
    const std::string why = parsed.status().message();
    if (why.rfind("nested deeper", 0) == 0) throw ApiError(400, "bad_json", "request body: " + why, "");
    throw ApiError(400, "bad_json", "request body: expected a JSON object, got malformed JSON (" + why + ")", "");
  }
  json j = std::move(parsed.value());
  if (!j.is_object())
    throw ApiError(400, "bad_request", std::string("request body: expected a JSON object, got ") + j.type_name(), "");
  return j;
}

const json* optional_field(const json& obj, const std::string& name) {
  auto it = obj.find(name);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

const json& required_field(const json& obj, const std::string& name, const std::string& prefix) {
  const json* v = optional_field(obj, name);
  if (!v) throw ApiError(400, "missing_field", path(prefix, name) + ": required", path(prefix, name));
  return *v;
}

double read_number(const json& obj, const std::string& name, std::optional<double> fallback, double lo, double hi,
                   const std::string& prefix) {
  const json* v = optional_field(obj, name);
  if (!v) {
    if (fallback) return *fallback;
    required_field(obj, name, prefix);
  }
  char range[96];
  std::snprintf(range, sizeof range, "a number in [%g, %g]", lo, hi);
  if (!v->is_number()) bad_field(path(prefix, name), range, *v);
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi)) bad_field(path(prefix, name), range, *v);
  return x;
}

int64_t read_integer(const json& obj, const std::string& name, std::optional<int64_t> fallback, int64_t lo, int64_t hi,
                     const std::string& prefix) {
  const json* v = optional_field(obj, name);
  if (!v) {
    if (fallback) return *fallback;
    required_field(obj, name, prefix);
  }
  const std::string range = "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  if (!v->is_number_integer()) bad_field(path(prefix, name), range, *v);
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi) bad_field(path(prefix, name), range, *v);
  return x;
}

bool read_bool(const json& obj, const std::string& name, std::optional<bool> fallback, const std::string& prefix) {
  const json* v = optional_field(obj, name);
  if (!v) {
    if (fallback) return *fallback;
    required_field(obj, name, prefix);
  }
  if (v->is_boolean()) return v->get<bool>();
  if (v->is_string() && (*v == "on" || *v == "off")) return *v == "on";
  bad_field(path(prefix, name), "true or false", *v);
}

std::string read_choice(const json& obj, const std::string& name, std::optional<std::string> fallback,
                        const std::vector<std::string>& choices, const std::string& prefix) {
  const json* v = optional_field(obj, name);
  if (!v) {
    if (fallback) return *fallback;
    required_field(obj, name, prefix);
  }
  std::string expected = "one of";
  for (const std::string& c : choices) expected += " \"" + c + "\"";
  if (!v->is_string()) bad_field(path(prefix, name), expected, *v);
  for (const std::string& c : choices)
    if (*v == c) return c;
  bad_field(path(prefix, name), expected, *v);
}

Matrix read_matrix(const json& obj, const std::string& name, int64_t max_rows, int64_t max_cols, const std::string& prefix) {
  const std::string f = path(prefix, name);
  const json& v = required_field(obj, name, prefix);
  const std::string expected = "a matrix [T, d] as nested arrays of numbers (or one vector [d]), T <= " +
                               std::to_string(max_rows) + ", d <= " + std::to_string(max_cols);
  if (!v.is_array() || v.empty()) bad_field(f, expected, v);
  Matrix m;
  m.was_vector = !v[0].is_array();
  // Row r of the matrix, without copying the value (a copy of a deep value recurses).
  auto row_at = [&](int64_t r) -> const json& { return m.was_vector ? v : v[size_t(r)]; };
  m.rows = m.was_vector ? 1 : int64_t(v.size());
  m.cols = int64_t(row_at(0).size());
  if (m.rows > max_rows)
    throw ApiError(413, "too_large", f + ": expected at most " + std::to_string(max_rows) + " rows, got " + std::to_string(m.rows), f);
  if (m.cols > max_cols)
    throw ApiError(413, "too_large", f + ": expected at most " + std::to_string(max_cols) + " columns, got " + std::to_string(m.cols), f);
  if (m.cols == 0) bad_field(f, expected, v);
  m.data.reserve(size_t(m.rows * m.cols));
  for (int64_t r = 0; r < m.rows; ++r) {
    const json& row = row_at(r);
    const std::string rf = m.was_vector ? f : f + "[" + std::to_string(r) + "]";
    if (!row.is_array()) bad_field(rf, "an array of " + std::to_string(m.cols) + " numbers", row);
    if (int64_t(row.size()) != m.cols)
      bad_field(rf, "an array of " + std::to_string(m.cols) + " numbers (as row 0)", json(std::to_string(row.size()) + " numbers"));
    for (int64_t c = 0; c < m.cols; ++c) {
      const json& x = row[size_t(c)];
      check_float32(x, rf + "[" + std::to_string(c) + "]");
      m.data.push_back(x.get<double>());
    }
  }
  return m;
}

std::vector<double> read_vector(const json& obj, const std::string& name, int64_t size, std::optional<double> fill,
                                const std::string& prefix) {
  const std::string f = path(prefix, name);
  const json* v = optional_field(obj, name);
  if (!v) {
    if (fill) return std::vector<double>(size_t(size), *fill);
    required_field(obj, name, prefix);
  }
  const std::string expected = "an array of " + std::to_string(size) + " numbers";
  if (!v->is_array() || int64_t(v->size()) != size) bad_field(f, expected, *v);
  std::vector<double> out;
  for (size_t i = 0; i < v->size(); ++i) {
    const json& x = (*v)[i];
    check_float32(x, f + "[" + std::to_string(i) + "]");
    out.push_back(x.get<double>());
  }
  return out;
}

void reject_unknown_keys(const json& obj, const std::vector<std::string>& allowed, const std::string& prefix) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    bool known = false;
    for (const std::string& a : allowed) known = known || it.key() == a;
    if (!known) {
      std::string list;
      for (const std::string& a : allowed) list += (list.empty() ? "" : " ") + a;
      throw ApiError(400, "unknown_field", path(prefix, it.key()) + ": unknown field; expected one of " + list,
                     path(prefix, it.key()));
    }
  }
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (const char b : s) n += (static_cast<unsigned char>(b) & 0xC0) != 0x80;
  return n;
}

size_t utf8_char_bytes(std::string_view s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  const size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
  if (i + n > s.size()) return 1;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 1;
  return n;
}

namespace {
// A float as the shortest decimal that reads back as the same float ("0.4", not 0.3999999761581421):
// exact for the engine's float32 numbers, and about half the bytes.
json number_json(float v) {
  if (!std::isfinite(v)) return nullptr;
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
}
json number_json(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }
}  // namespace

template <typename T>
json nested(const T* data, const std::vector<int64_t>& shape) {
  if (shape.empty()) return number_json(*data);
  const std::vector<int64_t> inner(shape.begin() + 1, shape.end());
  int64_t stride = 1;
  for (int64_t d : inner) stride *= d;
  json out = json::array();
  for (int64_t i = 0; i < shape[0]; ++i) {
    if (inner.empty()) {
      out.push_back(number_json(data[i]));
    } else {
      out.push_back(nested(data + i * stride, inner));
    }
  }
  return out;
}

template json nested<float>(const float*, const std::vector<int64_t>&);
template json nested<double>(const double*, const std::vector<int64_t>&);

}  // namespace blocklab::server
