// Errors as values (leveldb style): the engine never prints and never exits. A Status is either
// ok or carries one line naming what is wrong, where, expected vs got. Only the edges (CLI, server)
// turn it into an exit code or an HTTP response.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace blocklab {

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  static Status ok() { return Status(); }
  static Status error(std::string message) { return Status(std::move(message)); }

  bool is_ok() const { return !message_.has_value(); }
  explicit operator bool() const { return is_ok(); }
  // REQUIRES: !is_ok()
  const std::string& message() const { return *message_; }

  // Prefixes the message with where the error happened ("layers.0: ...").
  Status with_context(const std::string& where) const {
    return is_ok() ? *this : Status(where + ": " + *message_);
  }

 private:
  explicit Status(std::string message) : message_(std::move(message)) {}
  std::optional<std::string> message_;
};

// A value or an error.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status error) : v_(std::move(error)) {}  // NOLINT; REQUIRES: !error.is_ok()

  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }
  Status status() const { return is_ok() ? Status::ok() : std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T value() && { return std::get<T>(std::move(v_)); }  // by value: safe on a temporary (range-for)
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

 private:
  std::variant<T, Status> v_;
};

#define BLOCKLAB_RETURN_IF_ERROR(expr)           \
  do {                                           \
    ::blocklab::Status _st = (expr);             \
    if (!_st.is_ok()) return _st;                \
  } while (0)

}  // namespace blocklab
