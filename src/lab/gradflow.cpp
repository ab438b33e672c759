#include "lab/gradflow.h"

#include <cmath>
#include <list>
#include <memory>
#include <mutex>
#include <string>

#include "engine/model.h"
#include "engine/optimizer.h"
#include "io/model_file.h"
#include "lab/tasks.h"

namespace blocklab::lab {

namespace {

// One measurement on a model made for `config` and initialised from `seed`.
template <typename T>
Result<GradFlowResult> measure_on(Model<T>& model, const ModelConfig& config, int64_t batch, int64_t seq_len,
                                  uint64_t seed) {
  const Task task = Task::create(TaskKind::copy, seq_len).value();
  const Batch b = task.batch(seed, 1, batch);
  BLOCKLAB_RETURN_IF_ERROR(model.forward_lm(b.tokens.data(), b.targets.data(), batch, seq_len));
  model.backward_lm(Model<T>::Grads::overwrite);

  GradFlowResult r;
  r.config = config;
  r.batch = batch;
  r.seq_len = seq_len;
  r.seed = seed;
  r.loss = model.loss();
  std::vector<double> param_sq(static_cast<size_t>(config.n_layers), 0.0);
  for (const ParamSpec& s : model.layout().specs()) {
    const int64_t layer = ParamLayout::layer_of(s.name);
    if (layer < 0) continue;
    const double n = l2_norm(model.grads().data() + s.offset, s.numel());
    param_sq[size_t(layer)] += n * n;
  }
  for (int64_t i = 0; i < config.n_layers; ++i) {
    const Tensor<T>& post = model.block_acts(i).resid_post;
    double sum = 0, sq = 0;
    for (T v : post.data) sum += double(v);
    const double mean = sum / double(post.numel());
    for (T v : post.data) sq += (double(v) - mean) * (double(v) - mean);
    const Tensor<T>& g = model.resid_pre_grad(i);
    r.layers.push_back({i, std::sqrt(param_sq[size_t(i)]), l2_norm(g.ptr(), g.numel()), mean,
                        std::sqrt(sq / double(post.numel()))});
  }
  return r;
}

// Models kept between measurements, initialised, per (config, seed): a measurement changes no parameter (it
// writes activations and overwrites gradients), so the next request for the same stack reuses one instead of
// allocating and initialising it again (at the page's 24 layers that was a fifth of the request: the
// initialisation, zeroing fresh memory and its page faults). Each model is lent to one measurement at a time;
// the pool keeps at most kPoolBytes of parameters and gradients, the least recently returned leaving first.
template <typename T>
class ModelPool {
 public:
  static constexpr size_t kPoolBytes = size_t(256) << 20;

  struct Kept {
    std::string key;
    std::unique_ptr<Model<T>> model;
  };

  // A model for (config, seed): one from the pool, or a new one, initialised.
  Result<Kept> take(const ModelConfig& config, uint64_t seed) {
    std::string key = io::config_key(config) + "#" + std::to_string(seed);
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = kept_.begin(); it != kept_.end(); ++it)
        if (it->key == key) {
          Kept k = std::move(*it);
          bytes_ -= size_of(*k.model);
          kept_.erase(it);
          return k;
        }
    }
    Result<Model<T>> created = Model<T>::create(config);
    if (!created) return created.status();
    auto model = std::make_unique<Model<T>>(std::move(created.value()));
    init_parameters(model->layout(), seed, model->params().data());
    return Kept{std::move(key), std::move(model)};
  }

  void give_back(Kept k) {
    const size_t size = size_of(*k.model);
    if (size > kPoolBytes) return;
    const std::lock_guard<std::mutex> lock(mutex_);
    while (!kept_.empty() && bytes_ + size > kPoolBytes) {
      bytes_ -= size_of(*kept_.front().model);
      kept_.pop_front();
    }
    bytes_ += size;
    kept_.push_back(std::move(k));
  }

 private:
  static size_t size_of(const Model<T>& m) { return (m.params().size() + m.grads().size()) * sizeof(T); }

  std::mutex mutex_;
  std::list<Kept> kept_;  // least recently returned first
  size_t bytes_ = 0;
};

template <typename T>
ModelPool<T>& pool() {
  static ModelPool<T> p;
  return p;
}

template <typename T>
Result<GradFlowResult> measure(const ModelConfig& config, int64_t batch, int64_t seq_len, uint64_t seed) {
  Result<typename ModelPool<T>::Kept> taken = pool<T>().take(config, seed);
  if (!taken) return taken.status();
  typename ModelPool<T>::Kept kept = std::move(taken.value());
  Result<GradFlowResult> r = measure_on(*kept.model, config, batch, seq_len, seed);
  pool<T>().give_back(std::move(kept));
  return r;
}

}  // namespace

Result<GradFlowResult> measure_gradient_flow(ModelConfig config, int64_t batch, int64_t seq_len, uint64_t seed,
                                             bool exact) {
  if (config.vocab_size && *config.vocab_size != 10)
    return Status::error("config key 'vocab_size': expected null or 10 (gradflow uses the copy task's vocabulary), got " +
                         std::to_string(*config.vocab_size));
  config.vocab_size = 10;
  if (batch < 1) return Status::error("batch: expected an integer >= 1, got " + std::to_string(batch));
  if (seq_len < 1) return Status::error("seq_len: expected an integer >= 1, got " + std::to_string(seq_len));
  return exact ? measure<double>(config, batch, seq_len, seed) : measure<float>(config, batch, seq_len, seed);
}

nlohmann::json to_json(const GradFlowResult& r) {
  nlohmann::json layers = nlohmann::json::array();
  for (const GradFlowLayer& l : r.layers)
    layers.push_back({{"layer", l.layer},
                      {"grad_norm_params", l.grad_norm_params},
                      {"grad_norm_resid", l.grad_norm_resid},
                      {"act_mean", l.act_mean},
                      {"act_std", l.act_std}});
  return {{"config", io::config_to_json(r.config)}, {"batch", r.batch}, {"seq_len", r.seq_len},
          {"seed", r.seed},                          {"loss", r.loss},   {"layers", layers}};
}

}  // namespace blocklab::lab
