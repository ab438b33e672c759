#include "lab/trainer.h"

#include <chrono>
#include <cmath>

#include "engine/rng.h"

namespace blocklab::lab {

using json = nlohmann::json;

json to_json(const TrainOptions& o) {
  json j{{"task", name_of(o.task)},
              {"steps", o.steps},
              {"batch", o.batch},
              {"seq_len", o.seq_len},
              {"optimizer", o.optimizer.kind == OptimizerConfig::Kind::adam ? "adam" : "adamw"},
              {"lr", o.optimizer.lr},
              {"beta1", o.optimizer.beta1},
              {"beta2", o.optimizer.beta2},
              {"adam_eps", o.optimizer.eps},
              {"weight_decay", o.optimizer.weight_decay},
              {"warmup", o.optimizer.warmup_steps},
              {"clip", o.optimizer.clip_norm},
              {"seed", o.seed},
              {"grad_norm_every", o.grad_norm_every},
              {"eval_batches", o.eval_batches},
              {"precision", name_of(o.precision)}};
  if (o.task == TaskKind::text) j["data"] = {{"path", o.data.path}, {"held_out", o.data.held_out}, {"hash", o.data.hash}};
  return j;
}

Status validate(const TrainOptions& o) {
  auto bad = [](const std::string& key, const std::string& expected, const std::string& got) {
    return Status::error("training option '" + key + "': expected " + expected + ", got " + got);
  };
  auto num = [](double v) { return json(v).dump(); };
  if (o.steps < 1) return bad("steps", "an integer >= 1", std::to_string(o.steps));
  if (o.batch < 1) return bad("batch", "an integer >= 1", std::to_string(o.batch));
  if (o.seq_len < 1) return bad("seq_len", "an integer >= 1", std::to_string(o.seq_len));
  if (!(o.optimizer.lr > 0) || !std::isfinite(o.optimizer.lr)) return bad("lr", "a finite number > 0", num(o.optimizer.lr));
  if (!(o.optimizer.beta1 >= 0 && o.optimizer.beta1 < 1)) return bad("beta1", "a number in [0, 1)", num(o.optimizer.beta1));
  if (!(o.optimizer.beta2 >= 0 && o.optimizer.beta2 < 1)) return bad("beta2", "a number in [0, 1)", num(o.optimizer.beta2));
  if (!(o.optimizer.eps > 0)) return bad("adam_eps", "a number > 0", num(o.optimizer.eps));
  if (!(o.optimizer.weight_decay >= 0)) return bad("weight_decay", "a number >= 0", num(o.optimizer.weight_decay));
  if (o.optimizer.warmup_steps < 0) return bad("warmup", "an integer >= 0", std::to_string(o.optimizer.warmup_steps));
  if (!(o.optimizer.clip_norm >= 0)) return bad("clip", "a number >= 0 (0: no clipping)", num(o.optimizer.clip_norm));
  if (o.grad_norm_every < 0) return bad("grad_norm_every", "an integer >= 0", std::to_string(o.grad_norm_every));
  if (o.eval_batches < 1) return bad("eval_batches", "an integer >= 1", std::to_string(o.eval_batches));
  return Status::ok();
}

Result<TrainOptions> train_options_from_json(const json& j) {
  if (!j.is_object()) return Status::error("training options: expected a JSON object");
  TrainOptions o;
  try {
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& k = it.key();
      const json& v = it.value();
      auto need = [&](bool ok, const char* what) {
        if (!ok) throw std::invalid_argument("training option '" + k + "': expected " + what + ", got " + v.dump());
      };
      if (k == "task") {
        need(v.is_string() && parse_task(v.get<std::string>()), "one of copy reverse sort chars text");
        o.task = *parse_task(v.get<std::string>());
      } else if (k == "data") {
        need(v.is_object(), "an object {\"path\", \"held_out\", \"hash\"}");
        for (auto d = v.begin(); d != v.end(); ++d) {
          if (d.key() == "path" && d->is_string()) o.data.path = d->get<std::string>();
          else if (d.key() == "hash" && d->is_string()) o.data.hash = d->get<std::string>();
          else if (d.key() == "held_out" && d->is_number()) o.data.held_out = d->get<double>();
          else throw std::invalid_argument("training option 'data': unknown or ill-typed key '" + d.key() + "'");
        }
      } else if (k == "precision") {
        need(v.is_string() && parse_precision(v.get<std::string>()), "\"f32\" or \"bf16\"");
        o.precision = *parse_precision(v.get<std::string>());
      } else if (k == "optimizer") {
        need(v.is_string() && (v == "adam" || v == "adamw"), "\"adam\" or \"adamw\"");
        o.optimizer.kind = v == "adam" ? OptimizerConfig::Kind::adam : OptimizerConfig::Kind::adamw;
      } else if (k == "steps" || k == "batch" || k == "seq_len" || k == "warmup" || k == "seed" ||
                 k == "grad_norm_every" || k == "eval_batches") {
        need(v.is_number_integer(), "an integer");
        const int64_t x = v.get<int64_t>();
        if (k == "steps") o.steps = x;
        else if (k == "batch") o.batch = x;
        else if (k == "seq_len") o.seq_len = x;
        else if (k == "warmup") o.optimizer.warmup_steps = x;
        else if (k == "seed") o.seed = uint64_t(x);
        else if (k == "grad_norm_every") o.grad_norm_every = x;
        else o.eval_batches = x;
      } else if (k == "lr" || k == "beta1" || k == "beta2" || k == "adam_eps" || k == "weight_decay" || k == "clip") {
        need(v.is_number(), "a number");
        const double x = v.get<double>();
        if (k == "lr") o.optimizer.lr = x;
        else if (k == "beta1") o.optimizer.beta1 = x;
        else if (k == "beta2") o.optimizer.beta2 = x;
        else if (k == "adam_eps") o.optimizer.eps = x;
        else if (k == "weight_decay") o.optimizer.weight_decay = x;
        else o.optimizer.clip_norm = x;
      } else {
        throw std::invalid_argument("training options: unknown key '" + k + "'");
      }
    }
  } catch (const std::invalid_argument& e) {
    return Status::error(e.what());
  }
  BLOCKLAB_RETURN_IF_ERROR(validate(o));
  return o;
}

double argmax_accuracy(const std::vector<float>& logits, const std::vector<int32_t>& targets, int64_t vocab) {
  int64_t right = 0;
  for (size_t n = 0; n < targets.size(); ++n) {
    const float* row = logits.data() + n * size_t(vocab);
    int64_t best = 0;
    for (int64_t v = 1; v < vocab; ++v)
      if (row[v] > row[best]) best = v;
    right += best == targets[n];
  }
  return targets.empty() ? 0.0 : double(right) / double(targets.size());
}

Trainer::Trainer(Model<float> model, Task task, const TrainOptions& options)
    : model_(std::move(model)),
      task_(std::move(task)),
      options_(options),
      optimizer_(options.optimizer, int64_t(model_.params().size())) {
  if (task_.kind() == TaskKind::text) options_.data.hash = task_.data_hash();  // what a resumed run checks
  layer_ranges_.resize(size_t(model_.config().n_layers));
  for (const ParamSpec& s : model_.layout().specs()) {
    const int64_t layer = ParamLayout::layer_of(s.name);
    if (layer >= 0) layer_ranges_[size_t(layer)].push_back({s.offset, s.numel()});
  }
}

namespace {

Result<Task> task_for(ModelConfig& config, const TrainOptions& options) {
  BLOCKLAB_RETURN_IF_ERROR(validate(options));
  Result<Task> task = Task::create(options.task, options.seq_len, options.data);
  if (!task) return task.status();
  const int64_t vocab = task->vocab_size();
  if (config.vocab_size && *config.vocab_size != vocab)
    return Status::error("config key 'vocab_size': expected " + std::to_string(vocab) + " (the " +
                         std::string(name_of(options.task)) + " task's vocabulary) or null, got " +
                         std::to_string(*config.vocab_size));
  config.vocab_size = vocab;
  // Without positions a non-causal stack cannot tell positions apart: reverse and sort are then
  // impossible. Those tasks (and chars, text) get a learned position embedding unless the config has one.
  if (options.task != TaskKind::copy && !config.max_seq_len) config.max_seq_len = options.seq_len;
  if (config.max_seq_len && *config.max_seq_len < options.seq_len)
    return Status::error("config key 'max_seq_len': expected at least seq_len " + std::to_string(options.seq_len) +
                         ", got " + std::to_string(*config.max_seq_len));
  if (task->needs_causal() && !config.causal)
    return Status::error("config key 'causal': expected true for the " + std::string(name_of(options.task)) +
                         " task (its targets are the next inputs: a non-causal model reads the answer), got false");
  return task;
}

}  // namespace

Result<ModelConfig> training_config(ModelConfig config, const TrainOptions& options) {
  Result<Task> task = task_for(config, options);
  if (!task) return task.status();
  BLOCKLAB_RETURN_IF_ERROR(validate(config));
  return config;
}

Result<Trainer> Trainer::create(ModelConfig config, const TrainOptions& options) {
  Result<Task> task = task_for(config, options);
  if (!task) return task.status();
  Result<Model<float>> model = Model<float>::create(config);
  if (!model) return model.status();
  init_parameters(model->layout(), options.seed, model->params().data());
  return Trainer(std::move(model.value()), std::move(task.value()), options);
}

Result<Trainer> Trainer::resume(Model<float> model, const TrainOptions& options, int64_t steps_done,
                                std::vector<float> exp_avg, std::vector<float> exp_avg_sq) {
  ModelConfig config = model.config();
  Result<Task> task = task_for(config, options);
  if (!task) return task.status();
  if (config != model.config())
    return Status::error("checkpoint: the model's config does not fit the task (vocab_size or causal)");
  if (exp_avg.size() != model.params().size() || exp_avg_sq.size() != model.params().size())
    return Status::error("checkpoint: optimizer state does not match the model's parameters");
  Trainer t(std::move(model), std::move(task.value()), options);
  t.optimizer_.exp_avg() = std::move(exp_avg);
  t.optimizer_.exp_avg_sq() = std::move(exp_avg_sq);
  t.optimizer_.set_steps_done(steps_done);
  return t;
}

double Trainer::accuracy(const std::vector<int32_t>& targets) const {
  return argmax_accuracy(model_.logits().data, targets, *model_.config().vocab_size);
}

std::vector<LayerGradNorm> Trainer::layer_grad_norms() const {
  std::vector<LayerGradNorm> out;
  for (size_t i = 0; i < layer_ranges_.size(); ++i) {
    double sq = 0;
    for (auto [offset, n] : layer_ranges_[i]) {
      const double norm = l2_norm(model_.grads().data() + offset, n);
      sq += norm * norm;
    }
    const Tensor<float>& g = model_.resid_pre_grad(int64_t(i));
    out.push_back({int64_t(i), std::sqrt(sq), l2_norm(g.ptr(), g.numel())});
  }
  return out;
}

StepRecord Trainer::step(std::vector<LayerGradNorm>* layers) {
  const int64_t step = steps_done() + 1;
  const ScopedMatmulPrecision precision(options_.precision);
  const Batch b = task_.batch(options_.seed, step, options_.batch);
  const ForwardOptions fwd{true, mix64(options_.seed ^ 0xD50Full) ^ uint64_t(step)};
  // The batch is valid by construction; forward_lm can only refuse ids outside the vocabulary.
  (void)model_.forward_lm(b.tokens.data(), b.targets.data(), b.batch, b.seq_len, fwd);
  StepRecord rec;
  rec.step = step;
  rec.loss = model_.loss();
  rec.accuracy = accuracy(b.targets);
  model_.backward_lm(Model<float>::Grads::overwrite);
  const bool layers_due = options_.grad_norm_every > 0 && (step == 1 || step % options_.grad_norm_every == 0);
  if (layers) {
    layers->clear();
    if (layers_due) *layers = layer_grad_norms();
  }
  rec.lr = optimizer_.lr_at(step);
  rec.grad_norm = optimizer_.step(model_.params().data(), model_.grads().data());
  return rec;
}

Evaluation Trainer::evaluate() {
  Evaluation e;
  const ScopedMatmulPrecision precision(options_.precision);
  for (int64_t i = 0; i < options_.eval_batches; ++i) {
    const Batch b = task_.eval_batch(options_.seed, i, options_.batch);
    (void)model_.forward_lm(b.tokens.data(), b.targets.data(), b.batch, b.seq_len);
    e.loss += model_.loss() / double(options_.eval_batches);
    e.accuracy += accuracy(b.targets) / double(options_.eval_batches);
  }
  return e;
}

}  // namespace blocklab::lab
