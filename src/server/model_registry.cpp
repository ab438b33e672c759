#include "server/model_registry.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/json_limits.h"
#include "io/model_file.h"
#include "io/safetensors.h"
#include "server/auth.h"

namespace blocklab::server {

namespace {

namespace fs = std::filesystem;

}  // namespace

namespace {

// The training state a checkpoint carries in __metadata__["blocklab.train"], every field type-checked.
struct TrainInfo {
  std::optional<std::string> task, alphabet;
  int64_t steps = 0;
};

Result<std::optional<TrainInfo>> read_train_info(const io::SafetensorsFile& file, const std::string& where) {
  auto it = file.metadata.find(io::kTrainMetadataKey);
  if (it == file.metadata.end()) return std::optional<TrainInfo>();
  const std::string key = std::string("__metadata__[\"") + io::kTrainMetadataKey + "\"]";
  Result<nlohmann::json> parsed = io::parse_json_limited(it->second, io::kMaxJsonDepth);
  if (!parsed) return Status::error(where + ": " + key + " is not valid JSON: " + parsed.status().message());
  const nlohmann::json& train = parsed.value();
  auto bad = [&](const std::string& field, const std::string& expected, const nlohmann::json& got) {
    std::string g = got.is_structured() ? std::string(got.type_name()) : got.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (g.size() > 60) g = g.substr(0, 57) + "...";
    return Status::error(where + ": " + key + (field.empty() ? "" : "." + field) + ": expected " + expected + ", got " + g);
  };
  if (!train.is_object()) return bad("", "a JSON object", train);
  TrainInfo info;
  if (auto s = train.find("step"); s != train.end()) {
    if (!s->is_number_integer() || (s->is_number_unsigned() ? s->get<uint64_t>() > uint64_t(1) << 53 : s->get<int64_t>() < 0))
      return bad("step", "an integer >= 0", *s);
    info.steps = s->get<int64_t>();
  }
  if (auto a = train.find("alphabet"); a != train.end() && !a->is_null()) {
    if (!a->is_string() || a->get<std::string>().empty()) return bad("alphabet", "a non-empty string", *a);
    info.alphabet = a->get<std::string>();
  }
  if (auto o = train.find("options"); o != train.end() && !o->is_null()) {
    if (!o->is_object()) return bad("options", "an object", *o);
    if (auto t = o->find("task"); t != o->end() && !t->is_null()) {
      if (!t->is_string() || t->get<std::string>().empty() || t->get<std::string>().size() > 64)
        return bad("options.task", "a task name (a string)", *t);
      info.task = t->get<std::string>();
    }
  }
  return std::optional<TrainInfo>(std::move(info));
}

}  // namespace

Status ModelRegistry::check_model_file(const io::SafetensorsFile& file, const std::string& where) const {
  try {
    Result<ModelConfig> config = io::config_of_safetensors(file, where);
    if (!config) return config.status();
    if (check_) BLOCKLAB_RETURN_IF_ERROR(check_(config.value()).with_context(where));
    Result<std::optional<TrainInfo>> train = read_train_info(file, where);
    if (!train) return train.status();
    if (train.value() && train.value()->alphabet) {
      // Token i is alphabet[i]: a chars model needs exactly one character per token.
      const std::string& alphabet = *train.value()->alphabet;
      const std::optional<int64_t> V = config->vocab_size;
      if (!V || int64_t(alphabet.size()) != *V)
        return Status::error(where + ": __metadata__[\"" + io::kTrainMetadataKey + "\"].alphabet: expected " +
                             (V ? std::to_string(*V) + " characters (vocab_size; token i is alphabet[i])"
                                : std::string("none (the model is not a language model)")) +
                             ", got " + std::to_string(alphabet.size()) + " characters");
    }
    return Status::ok();
  } catch (const std::exception& e) {  // defensive: a model file is never worth a 500 or an abort
    return Status::error(where + ": " + e.what());
  }
}

Result<std::shared_ptr<const LoadedModel>> ModelRegistry::load(const std::string& path, const std::string& id,
                                                               const std::string& source) const {
  try {
    Result<io::SafetensorsFile> file = io::read_safetensors(path);
    if (!file) return file.status();
    BLOCKLAB_RETURN_IF_ERROR(check_model_file(file.value(), path));  // before anything of the model's size
    Result<std::optional<TrainInfo>> train = read_train_info(file.value(), path);
    if (!train) return train.status();
    Result<Model<float>> model = io::model_from_safetensors<float>(file.value(), path);
    if (!model) return model.status();
    ModelInfo info;
    info.id = id;
    info.source = source;
    info.config = model->config();
    info.n_params = int64_t(model->params().size());
    std::error_code ec;
    const uintmax_t size = fs::file_size(path, ec);
    info.bytes = ec ? 0 : int64_t(size);
    info.path = path;
    if (train.value()) {
      info.task = train.value()->task;
      info.alphabet = train.value()->alphabet;
      info.steps = train.value()->steps;
    }
    info.description = (info.task ? "trained on the " + *info.task + " task for " + std::to_string(info.steps) + " steps"
                                  : std::string("not a training checkpoint")) +
                       "; d_model " + std::to_string(info.config.d_model) + ", " + std::to_string(info.config.n_layers) +
                       " layers, " + std::to_string(info.n_params) + " parameters";
    return std::shared_ptr<const LoadedModel>(new LoadedModel{std::move(info), std::move(model.value())});
  } catch (const std::exception& e) {  // bad_alloc, filesystem_error: a bad file is skipped, never fatal
    return Status::error(path + ": " + e.what());
  }
}

Result<std::unique_ptr<ModelRegistry>> ModelRegistry::open(const std::string& builtin_dir, const std::string& upload_dir,
                                                           ConfigCheck check) {
  std::unique_ptr<ModelRegistry> r(new ModelRegistry());
  r->upload_dir_ = upload_dir;
  r->check_ = std::move(check);
  std::error_code ec;
  if (!upload_dir.empty()) {  // "": built-in models only (the CLI's assistant)
    fs::create_directories(upload_dir, ec);
    if (ec) return Status::error(upload_dir + ": cannot create the upload folder: " + ec.message());
    for (const auto& e : fs::directory_iterator(upload_dir, ec))  // bodies of uploads cut off by a crash
      if (e.path().filename().string().starts_with(".part-")) fs::remove(e.path(), ec);
  }
  for (const auto& [dir, source] : {std::pair{builtin_dir, "builtin"}, std::pair{upload_dir, "upload"}}) {
    if (dir.empty() || !fs::is_directory(dir, ec)) continue;
    std::vector<fs::path> files;
    for (fs::directory_iterator e(dir, ec), end; !ec && e != end; e.increment(ec))
      if (e->path().extension() == ".safetensors") files.push_back(e->path());
    if (ec) r->warnings_.push_back("skipped " + dir + ": cannot list the folder: " + ec.message());
    std::sort(files.begin(), files.end());
    for (const fs::path& p : files) {
      Result<std::shared_ptr<const LoadedModel>> m = Status::error("unreachable");
      try {
        m = r->load(p.string(), p.stem().string(), source);
      } catch (const std::exception& e) {
        m = Status::error(p.string() + ": " + e.what());
      }
      if (!m) {
        r->warnings_.push_back("skipped " + m.status().message());
        continue;
      }
      r->models_[p.stem().string()] = m.value();
      if (std::string(source) == "upload") {  // the token file's second line names the uploader
        std::ifstream token(fs::path(dir) / (p.stem().string() + ".token"));
        std::string hash, owner;
        std::getline(token, hash);
        std::getline(token, owner);
        if (!owner.empty()) r->owners_[p.stem().string()] = owner;
      }
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

namespace {

// The file's bytes, mapped read-only (an upload is validated where it lies, not copied into memory).
struct MappedFile {
  const uint8_t* data = nullptr;
  size_t size = 0;
  ~MappedFile() {
    if (data) ::munmap(const_cast<uint8_t*>(data), size);
  }
  Status open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::error(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      return Status::error(path + ": cannot read: " + std::strerror(errno));
    }
    size = size_t(st.st_size);
    if (size > 0) {
      void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        ::close(fd);
        return Status::error(path + ": cannot map: " + std::strerror(errno));
      }
      data = static_cast<const uint8_t*>(p);
    }
    ::close(fd);
    return Status::ok();
  }
};

}  // namespace

int ModelRegistry::uploads_of(const std::string& owner) const {
  std::lock_guard lock(mu_);
  int n = 0;
  for (const auto& [id, o] : owners_) n += o == owner && models_.count(id);
  return n;
}

bool ModelRegistry::upload_fits(int64_t bytes, const UploadQuota& quota) const {
  std::lock_guard lock(mu_);
  int count = 0;
  int64_t total = 0;
  for (const auto& [id, m] : models_)
    if (m->info.source == "upload") {
      ++count;
      total += m->info.bytes;
    }
  return count < quota.max_count && total + bytes <= quota.max_bytes;
}

Result<ModelRegistry::Upload> ModelRegistry::add_upload_file(const std::string& tmp, const UploadQuota& quota,
                                                             bool* over_quota) {
  *over_quota = false;
  MappedFile file;
  BLOCKLAB_RETURN_IF_ERROR(file.open(tmp));
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a, 64 bits: the id names the bytes
  for (size_t i = 0; i < file.size; ++i) h = (h ^ file.data[i]) * 0x100000001b3ull;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  const std::string id = std::string("upload-") + hex;
  if (auto existing = get(id)) return Upload{existing->info, false, ""};
  // Validate before anything is kept: the header, the config against the server's limits (before any
  // allocation), then the tensors.
  Result<io::SafetensorsFile> parsed = io::parse_safetensors({file.data, file.size}, "upload");
  if (!parsed) return parsed.status();
  BLOCKLAB_RETURN_IF_ERROR(check_model_file(parsed.value(), "upload"));
  Result<Model<float>> check = io::model_from_safetensors<float>(parsed.value(), "upload");
  if (!check) return check.status();
  if (!quota.owner.empty() && quota.max_per_owner > 0 && uploads_of(quota.owner) >= quota.max_per_owner) {
    *over_quota = true;
    return Status::error("uploads: " + std::string(quota.owner.rfind("user:", 0) == 0 ? "an account" : "an address without a session") +
                         " may keep " + std::to_string(quota.max_per_owner) + " uploaded models: expected one of yours to be deleted first");
  }
  if (!upload_fits(int64_t(file.size), quota)) {
    *over_quota = true;
    return Status::error("uploads: the server keeps at most " + std::to_string(quota.max_count) + " uploaded models and " +
                         std::to_string(quota.max_bytes >> 20) + " MiB in all: expected one to be deleted first");
  }
  const fs::path path = fs::path(upload_dir_) / (id + ".safetensors");
  const fs::path token_path = fs::path(upload_dir_) / (id + ".token");
  const std::string token = random_token(24);
  {
    const int fd = ::open(token_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const std::string hash = token_hash(token) + "\n" + quota.owner + "\n";
    const bool ok = fd >= 0 && ::write(fd, hash.data(), hash.size()) == ssize_t(hash.size()) && ::fsync(fd) == 0;
    if (fd >= 0) ::close(fd);
    if (!ok) {
      std::error_code ec;
      fs::remove(token_path, ec);
      return Status::error("uploads: cannot store the upload (" + std::string(std::strerror(errno)) + ")");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(token_path, ec);
    return Status::error(path.string() + ": cannot save the upload: " + ec.message());
  }
  Result<std::shared_ptr<const LoadedModel>> m = load(path.string(), id, "upload");
  if (!m) {
    fs::remove(path, ec);
    fs::remove(token_path, ec);
    return m.status();
  }
  std::lock_guard lock(mu_);
  models_[id] = m.value();
  if (!quota.owner.empty()) owners_[id] = quota.owner;
  return Upload{m.value()->info, true, token};
}

ModelRegistry::DeleteResult ModelRegistry::remove_upload(const std::string& id, const std::string& token) {
  std::shared_ptr<const LoadedModel> m = get(id);
  if (!m) return DeleteResult::unknown;
  if (m->info.source != "upload") return DeleteResult::forbidden;
  const fs::path token_path = fs::path(upload_dir_) / (id + ".token");
  std::ifstream in(token_path);
  std::string stored;
  std::getline(in, stored);
  if (!same_secret(stored, token_hash(token))) return DeleteResult::forbidden;
  std::lock_guard lock(mu_);
  std::error_code ec;
  fs::remove(m->info.path, ec);
  fs::remove(token_path, ec);
  models_.erase(id);
  owners_.erase(id);
  return DeleteResult::deleted;
}

}  // namespace blocklab::server
