#include "server/model_registry.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/model_file.h"
#include "io/safetensors.h"

namespace blocklab::server {

namespace {

namespace fs = std::filesystem;

std::string hex_hash(const std::string& bytes) {  // FNV-1a, 64 bits
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)h);
  return buf;
}

}  // namespace

Result<std::shared_ptr<const LoadedModel>> ModelRegistry::load(const std::string& path, const std::string& id,
                                                               const std::string& source) const {
  Result<io::SafetensorsFile> file = io::read_safetensors(path);
  if (!file) return file.status();
  Result<Model<float>> model = io::model_from_safetensors<float>(file.value(), path);
  if (!model) return model.status();
  ModelInfo info;
  info.id = id;
  info.source = source;
  info.config = model->config();
  info.n_params = int64_t(model->params().size());
  info.bytes = int64_t(fs::file_size(path));
  info.path = path;
  auto it = file->metadata.find(io::kTrainMetadataKey);
  if (it != file->metadata.end()) {
    const nlohmann::json train = nlohmann::json::parse(it->second, nullptr, false);
    if (train.is_object()) {
      if (train.contains("alphabet") && train["alphabet"].is_string()) info.alphabet = train["alphabet"].get<std::string>();
      if (train.contains("step") && train["step"].is_number_integer()) info.steps = train["step"].get<int64_t>();
      if (train.contains("options") && train["options"].is_object() && train["options"].contains("task"))
        info.task = train["options"]["task"].get<std::string>();
    }
  }
  info.description = (info.task ? "trained on the " + *info.task + " task for " + std::to_string(info.steps) + " steps"
                                : std::string("not a training checkpoint")) +
                     "; d_model " + std::to_string(info.config.d_model) + ", " + std::to_string(info.config.n_layers) +
                     " layers, " + std::to_string(info.n_params) + " parameters";
  return std::shared_ptr<const LoadedModel>(new LoadedModel{std::move(info), std::move(model.value())});
}

Result<std::unique_ptr<ModelRegistry>> ModelRegistry::open(const std::string& builtin_dir, const std::string& upload_dir) {
  std::unique_ptr<ModelRegistry> r(new ModelRegistry());
  r->upload_dir_ = upload_dir;
  std::error_code ec;
  fs::create_directories(upload_dir, ec);
  if (ec) return Status::error(upload_dir + ": cannot create the upload folder: " + ec.message());
  for (const auto& [dir, source] : {std::pair{builtin_dir, "builtin"}, std::pair{upload_dir, "upload"}}) {
    if (dir.empty() || !fs::is_directory(dir)) continue;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const fs::path& p : files) {
      Result<std::shared_ptr<const LoadedModel>> m = r->load(p.string(), p.stem().string(), source);
      if (!m) {
        r->warnings_.push_back("skipped " + m.status().message());
        continue;
      }
      r->models_[p.stem().string()] = m.value();
    }
  }
  return r;
}

std::vector<ModelInfo> ModelRegistry::list() const {
  std::lock_guard lock(mu_);
  std::vector<ModelInfo> out;
  for (const auto& [id, m] : models_) out.push_back(m->info);
  std::stable_sort(out.begin(), out.end(), [](const ModelInfo& a, const ModelInfo& b) { return a.source < b.source; });
  return out;
}

std::shared_ptr<const LoadedModel> ModelRegistry::get(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = models_.find(id);
  return it == models_.end() ? nullptr : it->second;
}

Result<ModelInfo> ModelRegistry::add_upload(const std::string& bytes) {
  const std::string id = "upload-" + hex_hash(bytes);
  if (auto existing = get(id)) return existing->info;
  // Validate before anything is written.
  Result<io::SafetensorsFile> file =
      io::parse_safetensors({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, "upload");
  if (!file) return file.status();
  Result<Model<float>> check = io::model_from_safetensors<float>(file.value(), "upload");
  if (!check) return check.status();
  const fs::path path = fs::path(upload_dir_) / (id + ".safetensors");
  const fs::path tmp = fs::path(upload_dir_) / (id + ".tmp-" + std::to_string(::getpid()));
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(bytes.data(), std::streamsize(bytes.size()));
    if (!out.good()) return Status::error(path.string() + ": cannot save the upload");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return Status::error(path.string() + ": cannot save the upload: " + ec.message());
  Result<std::shared_ptr<const LoadedModel>> m = load(path.string(), id, "upload");
  if (!m) return m.status();
  std::lock_guard lock(mu_);
  models_[id] = m.value();
  return m.value()->info;
}

}  // namespace blocklab::server
