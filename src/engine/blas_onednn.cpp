// float32 GEMMs on oneDNN's matmul (brgemm: AVX-512 kernels), which library runs them (blas.h), and what the
// two oneDNN users of the BLAS layer (this file and blas_bf16.cpp) share.
#include <cblas.h>
#include <cpuid.h>
#include <omp.h>

#include <bit>
#include <cstdlib>
#include <cstring>
#include <oneapi/dnnl/dnnl.hpp>

#include "engine/blas.h"
#include "engine/blas_internal.h"

namespace blocklab {

// ---- shared ----

const dnnl::engine& onednn_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& onednn_stream() {
  thread_local dnnl::stream stream(onednn_engine());
  return stream;
}

std::string onednn_version() {
  const dnnl_version_t* v = dnnl_version();
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

dnnl::primitive_attr scaled_attr(float alpha, float beta) {
  dnnl::primitive_attr attr;
  if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
  if (beta != 0.0f) {
    dnnl::post_ops ops;
    ops.append_sum(beta);
    attr.set_post_ops(ops);
  }
  return attr;
}

size_t MatmulKeyHash::operator()(const MatmulKey& key) const {
  size_t h = 1469598103934665603ull;
  for (uint64_t x : {uint64_t(key.m), uint64_t(key.n), uint64_t(key.k), uint64_t(key.lda), uint64_t(key.ldb),
                     uint64_t(key.ldc), uint64_t(key.threads) << 2 | uint64_t(key.ta) << 1 | uint64_t(key.tb),
                     uint64_t(key.alpha) << 32 | key.beta})
    h = (h ^ x) * 1099511628211ull;
  return h;
}

MatmulKey matmul_key(bool ta, bool tb, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc,
                     float alpha, float beta) {
  return {m, n, k, lda, ldb, ldc, ta, tb, std::bit_cast<uint32_t>(alpha), std::bit_cast<uint32_t>(beta),
          omp_get_max_threads()};
}

// ---- which library runs float32 ----

namespace {

constexpr unsigned kAvx512Mask = dnnl_cpu_isa_avx512_core;  // the masks of the later AVX-512 ISAs contain it

// The CPU, as CPUID names it: vendor and family (base plus extended, as AMD and Intel both count it).
struct Cpu {
  std::string vendor;
  unsigned family = 0;
};

Cpu this_cpu() {
  Cpu cpu;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return cpu;
  char vendor[13] = {};
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  cpu.vendor = vendor;
  if (__get_cpuid(1, &a, &b, &c, &d)) {
    const unsigned base = (a >> 8) & 0xF, extended = (a >> 20) & 0xFF;
    cpu.family = base == 0xF ? base + extended : base;
  }
  return cpu;
}

// Where oneDNN sees AVX-512, oneDNN, except on AMD family 0x19 (Zen 4, the only Zen of that family with
// AVX-512): it executes a 512-bit FMA as two 256-bit halves, so its FMA peak is AVX2's, and the two libraries
// measured level there; and except where OpenBLAS itself runs its AVX-512 kernels (its core SkylakeX,
// Cooperlake or SapphireRapids: no OPENBLAS_CORETYPE holding it to Haswell's): on a Xeon with AMX the two
// measured level on one thread and OpenBLAS 5-8% ahead on two (docs/blas.md). A rule by what the CPU is, not a timing at start: a measurement on a
// loaded machine could choose differently from one process to the next, and the two libraries agree to
// float32 rounding, not to the bit (a job resumed by another worker must continue with the same bits).
GemmChoice detect_gemm_choice() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  const bool avx512 = (unsigned(isa) & kAvx512Mask) == kAvx512Mask;
  const Cpu cpu = this_cpu();
  const bool half_width = cpu.vendor == "AuthenticAMD" && cpu.family == 0x19;
  const std::string openblas_core = openblas_get_corename();
  const bool openblas_avx512 =
      openblas_core == "SkylakeX" || openblas_core == "Cooperlake" || openblas_core == "SapphireRapids";
  const char* env = std::getenv("BLOCKLAB_GEMM");
  const std::optional<GemmLibrary> asked = env ? parse_gemm_library(env) : std::nullopt;
  GemmChoice c;
  std::string why;
  if (asked) {
    c.library = *asked;
    why = "BLOCKLAB_GEMM=" + std::string(env);
  } else if (!avx512) {
    c.library = GemmLibrary::openblas;
    why = "the CPU has no AVX-512";
  } else if (half_width) {
    c.library = GemmLibrary::openblas;
    why = "AMD family 0x19 (Zen 4): AVX-512 in 256-bit halves, oneDNN no faster";
  } else if (openblas_avx512) {
    c.library = GemmLibrary::openblas;
    why = "OpenBLAS runs its AVX-512 kernels (" + openblas_core + "), oneDNN no faster";
  } else {
    c.library = GemmLibrary::onednn;
    why = "the CPU has AVX-512";
  }
  if (c.library == GemmLibrary::onednn)
    c.how = "onednn: " + onednn_version() + " f32 matmul, " + isa_name(isa) + " (" + why + ")";
  else
    c.how = "openblas: OpenBLAS sgemm, CPU ISA " + std::string(isa_name(isa)) + " (" + why + ")";
  return c;
}

thread_local int t_library = -1;  // a ScopedGemmLibrary's, or -1: the process's choice

// ---- oneDNN's f32 matmul ----

struct PreparedMatmul {
  dnnl::memory::desc a, b, c;
  dnnl::matmul matmul;
  bool available = false;  // false: only a reference implementation (or none); OpenBLAS runs the shape
};

// One primitive per shape and layout, made on first use (oneDNN's JIT).
PreparedMatmul make_matmul(const MatmulKey& key, float alpha, float beta) {
  using dims = dnnl::memory::dims;
  using dt = dnnl::memory::data_type;
  PreparedMatmul p;
  // The operands as they lie: A is [m][k] at stride lda (or [k][m] when transposed), B [k][n] (or [n][k]).
  p.a = dnnl::memory::desc(dims{key.m, key.k}, dt::f32, key.ta ? dims{1, key.lda} : dims{key.lda, 1});
  p.b = dnnl::memory::desc(dims{key.k, key.n}, dt::f32, key.tb ? dims{1, key.ldb} : dims{key.ldb, 1});
  p.c = dnnl::memory::desc(dims{key.m, key.n}, dt::f32, dims{key.ldc, 1});
  try {
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(p.a, p.b, p.c), scaled_attr(alpha, beta),
                                          onednn_engine());
    if (std::strncmp(pd.impl_info_str(), "ref", 3) != 0) {  // the reference loops are far slower than OpenBLAS
      p.matmul = dnnl::matmul(pd);
      p.available = true;
    }
  } catch (const dnnl::error&) {
  }
  return p;
}

}  // namespace

bool gemm_f32_onednn(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                     const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (k == 0) return false;  // C = beta C: OpenBLAS's
  const MatmulKey key = matmul_key(ta, tb, m, n, k, lda, ldb, ldc, alpha, beta);
  const PreparedMatmul* p = cached_matmul<PreparedMatmul>(key, [&] { return make_matmul(key, alpha, beta); });
  if (!p) return false;
  const dnnl::engine& engine = onednn_engine();
  dnnl::memory am(p->a, engine, const_cast<float*>(a)), bm(p->b, engine, const_cast<float*>(b)),
      cm(p->c, engine, c);
  dnnl::stream& stream = onednn_stream();
  try {  // oneDNN checks its arguments before it writes C
    p->matmul.execute(stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    stream.wait();
  } catch (const dnnl::error&) {
    return false;
  }
  return true;
}

std::string_view name_of(GemmLibrary library) { return library == GemmLibrary::onednn ? "onednn" : "openblas"; }

std::optional<GemmLibrary> parse_gemm_library(std::string_view name) {
  for (GemmLibrary l : {GemmLibrary::openblas, GemmLibrary::onednn})
    if (name == name_of(l)) return l;
  return std::nullopt;
}

const GemmChoice& gemm_choice() {
  static const GemmChoice choice = detect_gemm_choice();
  return choice;
}

std::string gemm_environment_error() {
  auto quoted = [](const char* v) {
    std::string s(v);
    if (s.size() > 40) s = s.substr(0, 40) + "…";
    for (char& ch : s)
      if (static_cast<unsigned char>(ch) < 0x20) ch = '?';
    return "\"" + s + "\"";
  };
  if (const char* v = std::getenv("BLOCKLAB_GEMM"); v && !parse_gemm_library(v))
    return std::string("BLOCKLAB_GEMM: expected openblas or onednn (or unset: chosen by the CPU), got ") + quoted(v);
  if (const char* v = std::getenv("BLOCKLAB_BF16"); v && std::strcmp(v, "emulate") != 0)
    return std::string("BLOCKLAB_BF16: expected emulate (or unset: native where the CPU has bf16), got ") + quoted(v);
  return "";
}

GemmLibrary gemm_library() { return t_library < 0 ? gemm_choice().library : GemmLibrary(t_library); }

ScopedGemmLibrary::ScopedGemmLibrary(GemmLibrary library) : previous_(t_library) { t_library = int(library); }
ScopedGemmLibrary::~ScopedGemmLibrary() { t_library = previous_; }

}  // namespace blocklab
