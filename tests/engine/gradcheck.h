// Finite-difference gradient checks (float64) shared by the engine's tests.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/rng.h"

namespace blocklab::testing {

inline std::vector<double> random_vector(size_t n, uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  std::vector<double> v(n);
  for (double& x : v) x = rng.normal() * scale;
  return v;
}

// Central differences of loss() with respect to every element of `values` (restored afterwards).
inline std::vector<double> numeric_gradient(std::vector<double>& values, const std::function<double()>& loss,
                                            double h = 1e-6) {
  std::vector<double> g(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const double keep = values[i];
    values[i] = keep + h;
    const double up = loss();
    values[i] = keep - h;
    const double down = loss();
    values[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

// Worst |analytic - numeric| relative to max(1, |numeric|), as llm.c's tests print it.
inline double worst_relative_error(const std::vector<double>& analytic, const std::vector<double>& numeric) {
  double worst = 0;
  for (size_t i = 0; i < analytic.size(); ++i)
    worst = std::max(worst, std::abs(analytic[i] - numeric[i]) / std::max(1.0, std::abs(numeric[i])));
  return worst;
}

inline void expect_gradient_close(const std::string& what, const std::vector<double>& analytic,
                                  const std::vector<double>& numeric, double tolerance = 1e-6) {
  ASSERT_EQ(analytic.size(), numeric.size()) << what;
  const double worst = worst_relative_error(analytic, numeric);
  EXPECT_LT(worst, tolerance) << what << ": worst relative error " << worst;
  // A check that cannot fail is no check: the gradient must not be all zeros unless the numeric one is.
  double norm_a = 0, norm_n = 0;
  for (size_t i = 0; i < analytic.size(); ++i) {
    norm_a += analytic[i] * analytic[i];
    norm_n += numeric[i] * numeric[i];
  }
  if (norm_n > 1e-12) {
    EXPECT_GT(norm_a, 0.0) << what << ": analytic gradient is all zeros";
  }
}

// sum(a * b)
inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace blocklab::testing
