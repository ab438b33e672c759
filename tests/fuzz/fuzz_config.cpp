// libFuzzer harness: a model config as JSON text (a --config file, the "blocklab.config" metadata).
// io::config_from_json_text must return a Status for any bytes; a config it accepts and validate()
// passes must survive config_to_json → text → config_from_json_text unchanged.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/model.h"
#include "fuzz_common.h"
#include "io/model_file.h"

using namespace blocklab;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::Scratch scratch;
  const std::string text(reinterpret_cast<const char*>(data), size);
  fuzz::guarded<fuzz::NoExceptionExpected>("fuzz_config", [&] {
    Result<ModelConfig> c = io::config_from_json_text(text, "fuzz");
    if (!c) return;
    if (!validate(*c)) return;
    const std::string again = io::config_to_json(*c).dump();
    Result<ModelConfig> back = io::config_from_json_text(again, "round trip");
    if (!back || !(back.value() == c.value())) {
      std::fprintf(stderr, "fuzz_config: config_to_json does not read back: %s -> %s\n", again.c_str(),
                   back ? "a different config" : back.status().message().c_str());
      __builtin_trap();
    }
    // A small valid config builds a model (the sizes a --config override could ask for).
    const ModelConfig& m = *c;
    if (m.d_model <= 64 && m.d_ff <= 256 && m.n_layers <= 4 && m.vocab_size.value_or(1) <= 256 &&
        m.max_seq_len.value_or(1) <= 256)
      (void)Model<float>::create(m);
  });
  return 0;
}
