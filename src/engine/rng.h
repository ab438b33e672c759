// Deterministic random numbers, the same on every platform and standard library (the C++
// <random> distributions are not): splitmix64 for streams, Box-Muller for normals.
#pragma once

#include <cmath>
#include <cstdint>

namespace blocklab {

// splitmix64's finaliser: a bijective mix of 64 bits.
constexpr uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The top 53 bits as a double in [0, 1).
constexpr double uniform01(uint64_t bits) { return double(bits >> 11) * 0x1.0p-53; }

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(mix64(seed + 0x632BE59BD9B4E019ull)) {}

  uint64_t next_u64() {
    state_ += 0x9E3779B97F4A7C15ull;
    return mix64(state_);
  }
  double uniform() { return uniform01(next_u64()); }                        // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }  // [lo, hi)
  // An integer in [0, n). REQUIRES: n > 0.
  uint64_t below(uint64_t n) { return next_u64() % n; }
  double normal() {  // standard normal, Box-Muller
    const double u1 = 1.0 - uniform();  // (0, 1]
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t state_;
};

}  // namespace blocklab
