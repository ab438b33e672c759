#include "io/json_limits.h"

namespace blocklab::io {

namespace {

using json = nlohmann::json;

// nlohmann's DOM builder behind a depth count. (Not json::parse's callback: its parser rescans the
// parent object at every end of a child, quadratic in a safetensors header's 50,000 entries.)
class DepthLimitedSax {
 public:
  DepthLimitedSax(json& result, int max_depth) : dom_(result, /*allow_exceptions=*/true), max_depth_(max_depth) {}
  bool too_deep() const { return too_deep_; }

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const json::string_t& s) { return dom_.number_float(v, s); }
  bool string(json::string_t& v) { return dom_.string(v); }
  bool binary(json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) { return open() && dom_.start_object(n); }
  bool key(json::string_t& v) { return dom_.key(v); }
  bool end_object() { --depth_; return dom_.end_object(); }
  bool start_array(std::size_t n) { return open() && dom_.start_array(n); }
  bool end_array() { --depth_; return dom_.end_array(); }
  template <class Exception>
  bool parse_error(std::size_t position, const std::string& last_token, const Exception& ex) {
    return dom_.parse_error(position, last_token, ex);  // throws ex
  }

 private:
  bool open() {
    if (++depth_ <= max_depth_) return true;
    too_deep_ = true;
    return false;  // stops the parser at once, before it reads the rest
  }
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  int max_depth_, depth_ = 0;
  bool too_deep_ = false;
};

}  // namespace

std::string json_error_text(const nlohmann::json::exception& e) {
  std::string s = e.what();
  if (s.rfind("[json.exception.", 0) == 0) {
    const size_t end = s.find("] ");
    if (end != std::string::npos) s = s.substr(end + 2);
  }
  return s;
}

Result<nlohmann::json> parse_json_limited(std::string_view text, int max_depth) {
  json result;
  DepthLimitedSax sax(result, max_depth);
  try {
    const bool ok = json::sax_parse(text.begin(), text.end(), &sax);
    if (sax.too_deep())
      return Status::error("nested deeper than " + std::to_string(max_depth) +
                           " levels of arrays and objects: expected at most " + std::to_string(max_depth));
    if (!ok) return Status::error("malformed JSON");  // parse_error throws first: not reached
  } catch (const json::exception& e) {
    return Status::error(json_error_text(e));
  } catch (const std::exception& e) {  // std::bad_alloc
    return Status::error(std::string("cannot parse JSON: ") + e.what());
  }
  return result;
}

}  // namespace blocklab::io
