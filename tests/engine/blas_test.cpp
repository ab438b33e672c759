// The GEMM layer: float32 (on both libraries, OpenBLAS and oneDNN) and float64 against a direct sum, and the
// bf16 matmul precision — its rounding, and its GEMM (native through oneDNN where the CPU has bf16 dot
// products, emulated elsewhere) against a double-precision sum over the inputs rounded to bfloat16, in every
// transpose, alpha, beta and stride.
#include "engine/blas.h"

#include <cblas.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <utility>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "gradcheck.h"

namespace blocklab {
namespace {

std::vector<float> random_matrix(int64_t n, uint64_t seed) {
  const std::vector<double> v = testing::random_vector(static_cast<size_t>(n), seed);
  return std::vector<float>(v.begin(), v.end());
}

// C = alpha op(A) op(B) + beta C in double, over inputs optionally rounded to bfloat16.
std::vector<double> reference(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                              const std::vector<float>& a, int64_t lda, const std::vector<float>& b, int64_t ldb,
                              double beta, const std::vector<float>& c, int64_t ldc, bool round) {
  auto value = [round](float x) { return round ? double(bf16_value(bf16_bits(x))) : double(x); };
  std::vector<double> out(c.begin(), c.end());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p)
        s += value(ta ? a[size_t(p * lda + i)] : a[size_t(i * lda + p)]) *
             value(tb ? b[size_t(j * ldb + p)] : b[size_t(p * ldb + j)]);
      out[size_t(i * ldc + j)] = alpha * s + (beta == 0 ? 0.0 : beta * double(c[size_t(i * ldc + j)]));
    }
  return out;
}

TEST(Bf16, RoundsToNearestTiesToEven) {
  EXPECT_EQ(bf16_bits(1.0f), 0x3f80);
  EXPECT_EQ(bf16_bits(-2.0f), 0xc000);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
  EXPECT_EQ(bf16_value(bf16_bits(1.0f + 0x1p-8f)), 1.0f);
  // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: the even one is 1 + 2^-6.
  EXPECT_EQ(bf16_value(bf16_bits(1.0f + 3 * 0x1p-8f)), 1.0f + 0x1p-6f);
  EXPECT_EQ(bf16_value(bf16_bits(1.0f + 0x1p-8f + 0x1p-20f)), 1.0f + 0x1p-7f);  // above halfway: up
  EXPECT_EQ(bf16_value(bf16_bits(1.4445f)), 1.4453125f);  // 8 significant bits
  EXPECT_EQ(bf16_value(bf16_bits(std::numeric_limits<float>::infinity())), std::numeric_limits<float>::infinity());
  EXPECT_EQ(bf16_value(bf16_bits(std::numeric_limits<float>::max())), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(bf16_value(bf16_bits(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(bf16_value(bf16_bits(std::bit_cast<float>(0x7f800001u)))));  // a NaN that rounds up
  EXPECT_EQ(bf16_value(bf16_bits(-0.0f)), -0.0f);
  EXPECT_TRUE(std::signbit(bf16_value(bf16_bits(-0.0f))));
}

TEST(Bf16, SupportIsReported) {
  const Bf16Support& s = bf16_support();
  EXPECT_EQ(s.how.rfind(s.native ? "native: oneDNN" : "emulated: ", 0), 0u) << s.how;
}

TEST(Gemm, TheLibraryIsChosenByTheCpuOrTheEnvironmentAndSaysWhy) {
  const GemmChoice& c = gemm_choice();
  EXPECT_EQ(c.how.rfind(std::string(name_of(c.library)) + ": ", 0), 0u) << c.how;
  const char* env = std::getenv("BLOCKLAB_GEMM");
  if (env && parse_gemm_library(env)) {
    EXPECT_EQ(c.library, *parse_gemm_library(env));
    EXPECT_NE(c.how.find(std::string("BLOCKLAB_GEMM=") + env), std::string::npos) << c.how;
  } else {
    const bool said = c.how.ends_with("(the CPU has AVX-512)") || c.how.ends_with("(the CPU has no AVX-512)") ||
                      c.how.ends_with("(AMD family 0x19 (Zen 4): AVX-512 in 256-bit halves, oneDNN no faster)") ||
                      c.how.ends_with("), oneDNN no faster)");  // "OpenBLAS runs its AVX-512 kernels (SkylakeX), ..."
    // The rule itself: OpenBLAS where its own kernels are AVX-512 ones, whatever the CPU.
    const std::string core = openblas_get_corename();
    if (core == "SkylakeX" || core == "Cooperlake" || core == "SapphireRapids") {
      EXPECT_EQ(c.library, GemmLibrary::openblas) << c.how;
    }
    EXPECT_TRUE(said) << c.how;
  }
  EXPECT_EQ(parse_gemm_library("onednn"), GemmLibrary::onednn);
  EXPECT_EQ(parse_gemm_library("OpenBLAS"), std::nullopt);
  EXPECT_EQ(gemm_library(), c.library);
  {
    const ScopedGemmLibrary on(c.library == GemmLibrary::onednn ? GemmLibrary::openblas : GemmLibrary::onednn);
    EXPECT_NE(gemm_library(), c.library);
  }
  EXPECT_EQ(gemm_library(), c.library);
}

// Shapes oneDNN has no fast kernel for fall back to OpenBLAS, and so do small ones: every shape in every
// layout still gives the product, on either side of kOneDnnMinMultiplyAdds.
TEST(Gemm, EveryLayoutOnOneDnnGivesTheProduct) {
  const ScopedGemmLibrary on(GemmLibrary::onednn);
  for (int64_t m : {1, 7, 1024})
    for (int64_t n : {1, 8, 1100})
      for (int64_t k : {1, 5})
        for (int mask = 0; mask < 4; ++mask) {
          const bool ta = mask & 1, tb = mask & 2;
          const int64_t lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 2, ldc = n;
          const std::vector<float> a = random_matrix((ta ? k : m) * lda, 4), b = random_matrix((tb ? n : k) * ldb, 5);
          std::vector<float> c(size_t(m * ldc), 0.0f);
          gemm<float>(ta, tb, m, n, k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), ldc);
          const std::vector<double> want = reference(ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc, false);
          for (size_t i = 0; i < c.size(); ++i) ASSERT_NEAR(c[i], want[i], 1e-5) << m << "x" << n << "x" << k << " " << mask;
        }
}

TEST(Bf16, PrecisionIsPerScopeAndPerThread) {
  EXPECT_EQ(matmul_precision(), MatmulPrecision::f32);
  {
    const ScopedMatmulPrecision outer(MatmulPrecision::bf16);
    EXPECT_EQ(matmul_precision(), MatmulPrecision::bf16);
    {
      const ScopedMatmulPrecision inner(MatmulPrecision::f32);
      EXPECT_EQ(matmul_precision(), MatmulPrecision::f32);
    }
    EXPECT_EQ(matmul_precision(), MatmulPrecision::bf16);
  }
  EXPECT_EQ(matmul_precision(), MatmulPrecision::f32);
}

struct GemmShape {
  bool ta, tb;
  int64_t m, n, k;
  float alpha, beta;
  int64_t pad;  // extra leading-dimension columns: strided operands
  const char* name;
};

void PrintTo(const GemmShape& s, std::ostream* os) { *os << s.name; }

class GemmTest : public ::testing::TestWithParam<GemmShape> {};

TEST_P(GemmTest, Float32AndBf16MatchTheirReferences) {
  const GemmShape s = GetParam();
  const int64_t a_rows = s.ta ? s.k : s.m, a_cols = s.ta ? s.m : s.k;
  const int64_t b_rows = s.tb ? s.n : s.k, b_cols = s.tb ? s.k : s.n;
  const int64_t lda = a_cols + s.pad, ldb = b_cols + s.pad, ldc = s.n + s.pad;
  const std::vector<float> a = random_matrix(a_rows * lda, 1), b = random_matrix(b_rows * ldb, 2),
                           c0 = random_matrix(s.m * ldc, 3);
  for (const auto& [p, library] : {std::pair{MatmulPrecision::f32, GemmLibrary::openblas},
                                    std::pair{MatmulPrecision::f32, GemmLibrary::onednn},
                                    std::pair{MatmulPrecision::bf16, gemm_choice().library}}) {
    const bool bf16 = p == MatmulPrecision::bf16;
    SCOPED_TRACE(std::string(name_of(p)) + " on " + std::string(name_of(library)));
    std::vector<float> c = c0, again = c0;
    {
      const ScopedMatmulPrecision scope(p);
      const ScopedGemmLibrary on(library);
      gemm<float>(s.ta, s.tb, s.m, s.n, s.k, s.alpha, a.data(), lda, b.data(), ldb, s.beta, c.data(), ldc);
      gemm<float>(s.ta, s.tb, s.m, s.n, s.k, s.alpha, a.data(), lda, b.data(), ldb, s.beta, again.data(), ldc);
    }
    EXPECT_EQ(c, again) << "the same call twice gives the same bits";
    const std::vector<double> want = reference(s.ta, s.tb, s.m, s.n, s.k, s.alpha, a, lda, b, ldb, s.beta, c0, ldc, bf16);
    const std::vector<double> other = reference(s.ta, s.tb, s.m, s.n, s.k, s.alpha, a, lda, b, ldb, s.beta, c0, ldc, !bf16);
    double worst = 0, apart = 0;
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = 0; j < s.n; ++j) {
        const size_t at = size_t(i * ldc + j);
        worst = std::max(worst, std::abs(double(c[at]) - want[at]));
        apart = std::max(apart, std::abs(want[at] - other[at]));
      }
    // float32 accumulation over k products of normal values: well inside this
    const double tolerance = 2e-6 * (1 + double(s.k));
    EXPECT_LT(worst, tolerance) << (bf16 ? "bf16" : "f32") << ", " << bf16_support().how;
    // The two precisions really differ (bf16 keeps 8 significant bits), by much more than the tolerance.
    if (s.k >= 16) {
      EXPECT_GT(apart, 10 * tolerance);
    }
    // Padding columns of C are never written.
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = s.n; j < ldc; ++j) EXPECT_EQ(c[size_t(i * ldc + j)], c0[size_t(i * ldc + j)]);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GemmTest,
    ::testing::Values(GemmShape{false, true, 33, 17, 64, 1.f, 0.f, 0, "LinearForward"},       // x W^T
                      GemmShape{false, false, 33, 64, 17, 1.f, 1.f, 0, "InputGradientAdds"},   // dx += dy W
                      GemmShape{true, false, 17, 64, 33, 1.f, 1.f, 3, "WeightGradientStrided"},  // dW += dy^T x
                      GemmShape{true, true, 20, 20, 16, 0.25f, 0.f, 5, "BothTransposedScaled"},
                      GemmShape{false, true, 1, 1, 1, 2.f, -0.5f, 0, "OneByOne"},
                      GemmShape{false, false, 4, 3, 0, 1.f, 0.5f, 0, "EmptySumScalesC"},       // k = 0
                      GemmShape{false, true, 96, 80, 2048, 1.f, 0.f, 0, "DeepSum"},            // the FFN's depth
                      // past kOneDnnMinMultiplyAdds: on oneDNN where it is chosen, in each layout
                      GemmShape{true, false, 130, 96, 100, 0.5f, 1.f, 2, "LargeWeightGradient"},
                      GemmShape{false, false, 100, 130, 96, 1.f, 1.f, 0, "LargeInputGradient"},
                      GemmShape{true, true, 96, 100, 130, 1.f, 0.f, 1, "LargeBothTransposed"}),
    [](const ::testing::TestParamInfo<GemmShape>& info) { return std::string(info.param.name); });

TEST(Gemm, DoubleIsNeverRounded) {
  const ScopedMatmulPrecision scope(MatmulPrecision::bf16);
  const double a[2] = {1.0 + 1e-9, 3.0}, b[2] = {1.0, 1.0 / 3.0};
  double c = 0;
  gemm<double>(false, false, 1, 1, 2, 1.0, a, 2, b, 1, 0.0, &c, 1);
  EXPECT_DOUBLE_EQ(c, 2.0 + 1e-9);
}

}  // namespace
}  // namespace blocklab
