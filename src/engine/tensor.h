// A dense, contiguous, row-major tensor that owns its data. Deliberately plain: kernels work on
// raw pointers and sizes (kernels.h); Tensor only carries a buffer together with its shape.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace blocklab {

using Shape = std::vector<int64_t>;

// The element count of `shape`, or -1 when a dimension is negative or the product overflows int64
// (then Tensor's constructor throws std::length_error rather than allocating a wrapped size). Shapes
// from files are bounded before they get here (io/safetensors.cpp, validate() in config.h).
inline int64_t numel_of(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return -1;
  return n;
}

// "[2, 5, 64]"
inline std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

template <typename T>
struct Tensor {
  Shape shape;
  std::vector<T> data;

  Tensor() = default;
  explicit Tensor(Shape s, T fill = T(0)) : shape(std::move(s)), data(size_t(numel_of(shape)), fill) {}
  Tensor(Shape s, std::vector<T> values) : shape(std::move(s)), data(std::move(values)) {}

  int64_t numel() const { return int64_t(data.size()); }
  int64_t ndim() const { return int64_t(shape.size()); }
  T* ptr() { return data.data(); }
  const T* ptr() const { return data.data(); }

  // Reshapes to `s`, reallocating only when the element count grows; contents are unspecified
  // afterwards. Used by workspaces that are sized once per input shape.
  void resize(const Shape& s) {
    shape = s;
    data.resize(size_t(numel_of(s)));
  }
  void fill(T v) { std::fill(data.begin(), data.end(), v); }
};

}  // namespace blocklab
