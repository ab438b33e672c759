// Reading a request body: every field checked for presence, type and range, every failure an
// ApiError that names the field ("x[2][1]", "overrides.alpha") with expected vs got. Handlers and the
// compute functions throw ApiError; the server turns it into the contract's JSON error with a 4xx.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace blocklab::server {

using json = nlohmann::json;

struct ApiError : std::runtime_error {
  int status;
  std::string code, field;
  ApiError(int status, std::string code, const std::string& message, std::string field = "")
      : std::runtime_error(message), status(status), code(std::move(code)), field(std::move(field)) {}
  json body() const;  // {"error": {"code", "message", "field"}}
};

// 400 bad_request naming `field`.
[[noreturn]] void bad_field(const std::string& field, const std::string& expected, const json& got);

// The server's limits, documented in docs/api.md and checked before any work starts.
struct Limits {
  int64_t max_body_bytes = 8 << 20;
  int64_t max_d_model = 1024;
  int64_t max_d_ff = 4096;
  int64_t max_tokens = 512;   // rows of a matrix, tokens of a sequence
  int64_t max_layers = 128;
  int64_t max_batch = 256;
  int64_t max_steps = 20000;
  int64_t max_heads = 64;
  double max_request_gflop = 4.0;       // a compute request's estimated cost
  double max_job_gflop = 40000.0;       // a training job's estimated cost (about half an hour here)
  int max_running_jobs = 2;
  int max_queued_jobs = 8;
  int max_jobs_per_account = 4;  // queued or running, per signed-in account
  int max_jobs_anonymous = 2;    // queued or running, per address without a session (the Train page runs two)
  // Uploads (POST /api/models): each file, how many are kept, and their bytes in all.
  int64_t max_upload_bytes = 64 << 20;
  int max_uploads = 32;
  int64_t max_upload_total_bytes = int64_t(512) << 20;
  int max_uploads_per_account = 8;  // kept per signed-in account
  int max_uploads_anonymous = 4;    // kept per address without a session
  // Connections (the HTTP layer, server/http.h).
  int max_connections = 1024;
  int64_t max_inflight_body_bytes = int64_t(256) << 20;  // JSON bodies being read or handled, all requests
  int max_connections_per_address = 128;
  int max_event_streams = 512;
  int64_t max_header_bytes = 16 << 10;  // request line and header fields together
  int max_header_fields = 100;
  double header_timeout_s = 10;  // a request's head, from its first byte
  double body_timeout_s = 60;    // a request's body, from the end of its head
  double idle_timeout_s = 30;    // a kept-alive connection between requests
};

// A matrix from nested arrays ([T, d]) or a single vector ([d], then rows = 1 and `was_vector`).
struct Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<double> data;  // row-major
  bool was_vector = false;
};

// The request body as a JSON object (400 naming the body when it is not).
json parse_body(const std::string& body);

const json* optional_field(const json& obj, const std::string& name);
const json& required_field(const json& obj, const std::string& name, const std::string& prefix = "");

double read_number(const json& obj, const std::string& name, std::optional<double> fallback, double lo, double hi,
                   const std::string& prefix = "");
int64_t read_integer(const json& obj, const std::string& name, std::optional<int64_t> fallback, int64_t lo, int64_t hi,
                     const std::string& prefix = "");
bool read_bool(const json& obj, const std::string& name, std::optional<bool> fallback, const std::string& prefix = "");
// Also accepts "on"/"off" (the CLI's spelling).
std::string read_choice(const json& obj, const std::string& name, std::optional<std::string> fallback,
                        const std::vector<std::string>& choices, const std::string& prefix = "");
Matrix read_matrix(const json& obj, const std::string& name, int64_t max_rows, int64_t max_cols,
                   const std::string& prefix = "");
// A vector of exactly `size` numbers, or `fallback` (filled with `fill`) when absent.
std::vector<double> read_vector(const json& obj, const std::string& name, int64_t size, std::optional<double> fill,
                                const std::string& prefix = "");
// Text as the user typed it: characters (code points) of a UTF-8 string, not its bytes. The JSON reader
// refuses ill-formed UTF-8, so a string here is well formed; a stray byte would count as one character.
size_t utf8_length(std::string_view s);
// The bytes of the UTF-8 character that starts at s[i]: 1 to 4, or 1 for a byte that starts no well-formed one.
size_t utf8_char_bytes(std::string_view s, size_t i);

// Rejects keys not in `allowed` (a misspelt knob should not be silently ignored).
void reject_unknown_keys(const json& obj, const std::vector<std::string>& allowed, const std::string& prefix = "");

// Nested arrays of a row-major buffer with `shape`; non-finite values (masked scores) become null.
template <typename T>
json nested(const T* data, const std::vector<int64_t>& shape);

}  // namespace blocklab::server
