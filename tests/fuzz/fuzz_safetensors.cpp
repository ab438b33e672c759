// libFuzzer harness: the bytes of a .safetensors file, down every path that reads one.
//   io::parse_safetensors → every tensor through to_float_tensor / to_int_ids (model inputs) →
//   serialize_safetensors must parse again → io::model_from_safetensors<float> (the config in
//   __metadata__, tensor names and shapes) → for a training checkpoint ("blocklab.train" metadata)
//   io::load_checkpoint, and for a valid model the server's upload path (ModelRegistry::add_upload,
//   which also reads the training metadata: task, alphabet, steps).
// Errors must come back as a Status; any exception is a bug.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "fuzz_common.h"
#include "io/checkpoint.h"
#include "io/model_file.h"
#include "io/safetensors.h"
#include "server/model_registry.h"

using namespace blocklab;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::Scratch scratch;
  fuzz::guarded<fuzz::NoExceptionExpected>("fuzz_safetensors", [&] {
    Result<io::SafetensorsFile> file = io::parse_safetensors({data, size}, "fuzz");
    if (!file) return;
    for (const io::StoredTensor& t : file->tensors) {
      (void)io::to_float_tensor<float>(t, "fuzz");
      (void)io::to_int_ids(t, "fuzz");
    }
    const std::vector<uint8_t> again = io::serialize_safetensors(file.value());
    Result<io::SafetensorsFile> reparsed = io::parse_safetensors(again, "round trip");
    if (!reparsed || reparsed->tensors.size() != file->tensors.size() || reparsed->metadata != file->metadata) {
      std::fprintf(stderr, "fuzz_safetensors: serialize_safetensors of a parsed file does not parse back the same: %s\n",
                   reparsed ? "different tensors or metadata" : reparsed.status().message().c_str());
      __builtin_trap();
    }

    Result<Model<float>> model = io::model_from_safetensors<float>(file.value(), "fuzz");
    const bool checkpoint = file->metadata.count(io::kTrainMetadataKey) != 0;
    if (!model && !checkpoint) return;

    // The paths that read a file by name: write the input once to the scratch folder.
    const std::string bytes(reinterpret_cast<const char*>(data), size);
    const std::filesystem::path path = scratch.dir() / "input.safetensors";
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), std::streamsize(bytes.size()));
    }
    if (checkpoint) (void)io::load_checkpoint(path.string());
    if (model) {
      const std::filesystem::path uploads = scratch.dir() / "uploads";
      Result<std::unique_ptr<server::ModelRegistry>> registry = server::ModelRegistry::open("", uploads.string());
      if (registry) {  // as the server takes an upload: its body written to a file in the upload folder
        const std::filesystem::path body = uploads / ".part-fuzz";
        std::filesystem::copy_file(path, body, std::filesystem::copy_options::overwrite_existing);
        bool over_quota = false;
        (void)registry.value()->add_upload_file(body.string(), {}, &over_quota);
      }
      std::error_code ec;
      std::filesystem::remove_all(uploads, ec);
    }
  });
  return 0;
}
