#include "io/checkpoint.h"

#include "io/json_limits.h"
#include "io/model_file.h"
#include "io/safetensors.h"

namespace blocklab::io {

namespace {
const std::string kExpAvg = std::string(kOptimizerPrefix) + "exp_avg.";
const std::string kExpAvgSq = std::string(kOptimizerPrefix) + "exp_avg_sq.";
}  // namespace

Status save_checkpoint(const std::string& path, const Model<float>& model, const Optimizer<float>& optimizer,
                       const nlohmann::json& train) {
  SafetensorsFile file = model_to_safetensors(model);
  file.metadata[kTrainMetadataKey] = train.dump();
  for (const ParamSpec& spec : model.layout().specs()) {
    file.add(from_float_tensor(kExpAvg + spec.name, param_tensor(spec, optimizer.exp_avg()), DType::F32));
    file.add(from_float_tensor(kExpAvgSq + spec.name, param_tensor(spec, optimizer.exp_avg_sq()), DType::F32));
  }
  return write_safetensors(path, file);
}

Result<Checkpoint> load_checkpoint(const std::string& path) {
  Result<SafetensorsFile> file = read_safetensors(path);
  if (!file) return file.status();
  auto it = file->metadata.find(kTrainMetadataKey);
  if (it == file->metadata.end())
    return Status::error(path + ": not a training checkpoint: __metadata__ has no \"" + std::string(kTrainMetadataKey) +
                         "\" (a model file from init or PyTorch cannot be resumed: fine-tune it with train --init)");
  Result<nlohmann::json> parsed = parse_json_limited(it->second, kMaxJsonDepth);
  if (!parsed)
    return Status::error(path + ": \"" + std::string(kTrainMetadataKey) + "\" is not valid JSON: " + parsed.status().message());
  nlohmann::json train = std::move(parsed.value());
  if (!train.is_object() || !train.contains("step") || !train["step"].is_number_integer())
    return Status::error(path + ": \"" + std::string(kTrainMetadataKey) + "\": expected a JSON object with an integer \"step\", got " +
                         (it->second.size() > 60 ? it->second.substr(0, 57) + "..." : it->second));
  Result<Model<float>> model = model_from_safetensors<float>(file.value(), path);
  if (!model) return model.status();
  Checkpoint ck{std::move(model.value()), {}, {}, std::move(train)};
  ck.exp_avg.assign(ck.model.params().size(), 0.f);
  ck.exp_avg_sq.assign(ck.model.params().size(), 0.f);
  const auto by_name = tensors_by_name(file.value());
  for (const ParamSpec& spec : ck.model.layout().specs()) {
    for (auto [prefix, dest] : {std::pair{&kExpAvg, &ck.exp_avg}, std::pair{&kExpAvgSq, &ck.exp_avg_sq}}) {
      auto found = by_name.find(*prefix + spec.name);
      const StoredTensor* t = found == by_name.end() ? nullptr : found->second;
      if (!t) return Status::error(path + ": missing tensor '" + *prefix + spec.name + "': expected shape " + shape_str(spec.shape));
      if (t->shape != spec.shape)
        return Status::error(path + ": tensor '" + *prefix + spec.name + "': expected shape " + shape_str(spec.shape) +
                             ", got " + shape_str(t->shape));
      Result<Tensor<float>> values = to_float_tensor<float>(*t, path);
      if (!values) return values.status();
      std::copy(values->data.begin(), values->data.end(), dest->begin() + spec.offset);
    }
  }
  return ck;
}

}  // namespace blocklab::io
