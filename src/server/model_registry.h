// The models the server knows: built-in ones (models/*.safetensors, shipped in the repository) and
// uploaded ones (saved under the upload folder, named by a hash of their bytes). Every widget names the
// model it computes with; the same id gives the same weights on every page.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/status.h"
#include "io/safetensors.h"

namespace blocklab::server {

struct ModelInfo {
  std::string id;           // file stem: "chars-small", "upload-3f2a..."
  std::string source;       // "builtin" | "upload"
  std::string description;  // from the training state: task, steps, held-out figures
  ModelConfig config;
  std::optional<std::string> task;      // the task it was trained on, if a checkpoint
  std::optional<std::string> alphabet;  // chars task: token i is alphabet[i]
  int64_t steps = 0;                    // training steps, if a checkpoint
  int64_t n_params = 0;
  int64_t bytes = 0;
  std::string path;
};

struct LoadedModel {
  ModelInfo info;
  Model<float> model;  // a request copies it: activations are per request
};

// A check of a model's config before the model is built (the server's: check_config_limits in compute.h).
using ConfigCheck = std::function<Status(const ModelConfig&)>;

class ModelRegistry {
 public:
  // Loads every *.safetensors in builtin_dir (may be missing) and upload_dir (created if needed; "": none).
  // A file that does not load, whatever is wrong with it, is skipped with one line in `warnings`.
  // `check` (may be empty) vets every model's config before it is built, for these files and uploads.
  static Result<std::unique_ptr<ModelRegistry>> open(const std::string& builtin_dir, const std::string& upload_dir,
                                                     ConfigCheck check = {});

  std::vector<ModelInfo> list() const;
  std::shared_ptr<const LoadedModel> get(const std::string& id) const;  // null if unknown
  // The uploads' quota: how many files and how many bytes in all the upload folder may hold.
  struct UploadQuota {
    int max_count = 32;
    int64_t max_bytes = int64_t(512) << 20;
    std::string owner;    // who uploads: "user:NAME" signed in, "address:IP" anonymous ("": not counted)
    int max_per_owner = 0;  // uploads kept per owner (0: no limit)
  };
  struct Upload {
    ModelInfo info;
    bool created = false;      // false: the same bytes were uploaded before (no new token)
    std::string delete_token;  // created only: the secret that deletes it (only its hash is kept)
  };
  // Takes a file the server received into the upload folder (renamed into place when it is a valid
  // model; left for the caller to remove otherwise). Errors: a message, and `quota` set when the
  // quota is the reason.
  Result<Upload> add_upload_file(const std::string& path, const UploadQuota& quota, bool* over_quota);
  // How many uploads `owner` has (kept in each upload's token file, so it survives a restart).
  int uploads_of(const std::string& owner) const;
  // Whether one more upload of `bytes` fits the quota (checked before the body is read).
  bool upload_fits(int64_t bytes, const UploadQuota& quota) const;
  // Deletes an upload when `token` is its delete token. 404: unknown; 403: builtin or wrong token.
  enum class DeleteResult { deleted, unknown, forbidden };
  DeleteResult remove_upload(const std::string& id, const std::string& token);
  const std::string& upload_dir() const { return upload_dir_; }
  const std::vector<std::string>& warnings() const { return warnings_; }
  // Everything load() checks before building the model, on a parsed file: the config (validate(), then
  // the ConfigCheck), the training metadata's types ("blocklab.train": step an integer, options.task a
  // string, alphabet a string of vocab_size characters). Allocates nothing of the model's size.
  Status check_model_file(const io::SafetensorsFile& file, const std::string& where) const;

 private:
  Result<std::shared_ptr<const LoadedModel>> load(const std::string& path, const std::string& id,
                                                  const std::string& source) const;
  std::string upload_dir_;
  ConfigCheck check_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const LoadedModel>> models_;
  std::vector<std::string> warnings_;
  std::map<std::string, std::string> owners_;  // upload id -> its uploader
};

}  // namespace blocklab::server
