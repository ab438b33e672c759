// libFuzzer harness: the HTTP API's JSON request readers, without a socket. The first byte picks the
// endpoint (its value mod 8: '0' residual, '1' layernorm, '2' rmsnorm, '3' batchnorm, '4' ffn,
// '5' block, '6' gradient-flow, '7' POST /api/runs), the rest is the request body, read as the server
// reads it: server::parse_body, then the endpoint's compute function (or read_run_request).
// server::ApiError is the documented outcome of bad input (a 4xx); any other exception would be a
// 500, and any crash or sanitizer report a bug. Small limits keep each execution fast.
// BLOCKLAB_FUZZ_VERBOSE=1 prints each outcome (status, error body) on stderr: for checking the corpus.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "engine/model.h"
#include "engine/params.h"
#include "fuzz_common.h"
#include "io/model_file.h"
#include "server/compute.h"
#include "server/model_registry.h"

using namespace blocklab;

namespace {

struct Env {
  fuzz::Scratch scratch;
  server::Limits limits;
  std::unique_ptr<server::ModelRegistry> models;

  Env() {
    limits.max_d_model = 32;
    limits.max_d_ff = 64;
    limits.max_tokens = 16;
    limits.max_layers = 4;
    limits.max_batch = 4;
    limits.max_steps = 10;
    limits.max_request_gflop = 0.01;
    // The built-in models (models/chars-small: a chars language model with an alphabet) and, as an
    // upload, "stack-tiny": a block stack that is not a language model (d_model 8, 2 heads), as in
    // tests/server/server_test.cpp.
    const std::filesystem::path uploads = scratch.dir() / "uploads";
    std::filesystem::create_directories(uploads);
    ModelConfig c;
    c.d_model = 8;
    c.n_heads = 2;
    c.d_ff = 16;
    c.n_layers = 1;
    Model<float> m = Model<float>::create(c).value();
    init_parameters(m.layout(), 4, m.params().data());
    if (!io::save_model((uploads / "stack-tiny.safetensors").string(), m)) __builtin_trap();
    auto r = server::ModelRegistry::open(BLOCKLAB_SOURCE_DIR "/models", uploads.string());
    if (!r || !r.value()->get("chars-small") || !r.value()->get("stack-tiny")) {
      std::fprintf(stderr, "fuzz_api_json: cannot open the models (%s)\n", r ? "a model is missing" : r.status().message().c_str());
      __builtin_trap();
    }
    models = std::move(r.value());
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Env env;
  static const bool verbose = std::getenv("BLOCKLAB_FUZZ_VERBOSE") != nullptr;  // each outcome on stderr
  if (size < 1) return 0;
  const int endpoint = data[0] % 8;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  fuzz::guarded<fuzz::NoExceptionExpected>("fuzz_api_json", [&] {
    const auto replace = server::json::error_handler_t::replace;  // as the server writes its answers
    try {
      const server::json req = server::parse_body(body);
      const server::Limits& L = env.limits;
      const server::ModelRegistry& M = *env.models;
      server::json out;
      switch (endpoint) {
        case 0: out = server::compute_residual(req, M, L); break;
        case 1: out = server::compute_layernorm(req, L); break;
        case 2: out = server::compute_rmsnorm(req, L); break;
        case 3: out = server::compute_batchnorm(req, L); break;
        case 4: out = server::compute_ffn(req, M, L); break;
        case 5: out = server::compute_block(req, M, L); break;
        case 6: out = server::compute_gradient_flow(req, L); break;
        case 7: (void)server::read_run_request(req, L); break;
      }
      const std::string answer = out.dump(-1, ' ', false, replace);
      if (verbose) std::fprintf(stderr, "  endpoint %d: 200, %zu bytes\n", endpoint, answer.size());
    } catch (const server::ApiError& e) {
      const std::string answer = e.body().dump(-1, ' ', false, replace);  // the 4xx answer
      if (verbose) std::fprintf(stderr, "  endpoint %d: %d %s\n", endpoint, e.status, answer.c_str());
    }
  });
  return 0;
}
