// The optimizer: Adam or AdamW (PyTorch semantics) over the model's flat parameter buffer, with a
// linear learning-rate warm-up and optional clipping of the gradient's global L2 norm.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/kernels.h"

namespace blocklab {

struct OptimizerConfig {
  enum class Kind { adamw, adam };
  Kind kind = Kind::adamw;  // adamw: decoupled weight decay; adam: weight decay added to the gradient (L2)
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  int64_t warmup_steps = 0;  // step t (1-based) uses lr * min(1, t / warmup_steps)
  double clip_norm = 0.0;    // > 0: scale the gradient so its global L2 norm is at most this
};

template <typename T>
class Optimizer {
 public:
  Optimizer(const OptimizerConfig& config, int64_t n_params);

  // One step: clip (in place), then update params from grads. Returns the gradient's global L2 norm
  // before clipping (what torch.nn.utils.clip_grad_norm_ returns).
  double step(T* params, T* grads);

  double lr_at(int64_t step) const;  // the learning rate step `step` (1-based) uses
  int64_t steps_done() const { return steps_done_; }
  const OptimizerConfig& config() const { return config_; }

  // Adam's moments (PyTorch's exp_avg and exp_avg_sq), for checkpoints.
  std::vector<T>& exp_avg() { return m_; }
  std::vector<T>& exp_avg_sq() { return v_; }
  const std::vector<T>& exp_avg() const { return m_; }
  const std::vector<T>& exp_avg_sq() const { return v_; }
  // Continues from a checkpoint taken after `steps_done` steps. REQUIRES: moments already restored.
  void set_steps_done(int64_t steps_done) { steps_done_ = steps_done; }

 private:
  OptimizerConfig config_;
  std::vector<T> m_, v_;
  int64_t steps_done_ = 0;
};

// sqrt(sum of squares), accumulated in double.
template <typename T>
double l2_norm(const T* values, int64_t n);

}  // namespace blocklab
