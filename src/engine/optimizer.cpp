#include "engine/optimizer.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace blocklab {

template <typename T>
double l2_norm(const T* values, int64_t n) {
  // Sums of fixed chunks, added in order: the same bits for any number of threads. Within a chunk, 8 running
  // sums (element i into sum i mod 8) added pairwise at the end: one chain of double additions was bound by
  // the adder's latency (4 cycles an element); 8 independent ones run at the load rate, and vectorise.
  constexpr int64_t kChunk = int64_t(1) << 14, kLanes = 8;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<size_t>(chunks));
#pragma omp parallel for schedule(static) if (chunks >= 4)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk, end = std::min(n, begin + kChunk);
    double lane[kLanes] = {};
    int64_t i = begin;
    for (; i + kLanes <= end; i += kLanes)
      for (int64_t j = 0; j < kLanes; ++j) lane[j] += double(values[i + j]) * double(values[i + j]);
    for (int64_t j = 0; i < end; ++i, ++j) lane[j] += double(values[i]) * double(values[i]);
    partial[size_t(c)] = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  }
  double s = 0;
  for (double p : partial) s += p;
  return std::sqrt(s);
}

template <typename T>
Optimizer<T>::Optimizer(const OptimizerConfig& config, int64_t n_params)
    : config_(config), m_(size_t(n_params), T(0)), v_(size_t(n_params), T(0)) {}

template <typename T>
double Optimizer<T>::lr_at(int64_t step) const {
  if (config_.warmup_steps <= 0) return config_.lr;
  return config_.lr * std::min(1.0, double(step) / double(config_.warmup_steps));
}

template <typename T>
double Optimizer<T>::step(T* params, T* grads) {
  const int64_t n = int64_t(m_.size());
  const double norm = l2_norm(grads, n);
  if (config_.clip_norm > 0) {  // as torch.nn.utils.clip_grad_norm_
    const double coef = config_.clip_norm / (norm + 1e-6);
    if (coef < 1) {
#pragma omp parallel for schedule(static) if (n >= (int64_t(1) << 16))
      for (int64_t i = 0; i < n; ++i) grads[i] *= T(coef);
    }
  }
  ++steps_done_;
  AdamWHyper h{lr_at(steps_done_), config_.beta1, config_.beta2, config_.eps, config_.weight_decay};
  if (config_.kind == OptimizerConfig::Kind::adam) {  // torch.optim.Adam: grad += weight_decay * param
    if (config_.weight_decay != 0) {
#pragma omp parallel for schedule(static) if (n >= (int64_t(1) << 16))
      for (int64_t i = 0; i < n; ++i) grads[i] += T(config_.weight_decay) * params[i];
    }
    h.weight_decay = 0;
  }
  adamw_update(params, grads, m_.data(), v_.data(), n, h, steps_done_);
  return norm;
}

template class Optimizer<float>;
template class Optimizer<double>;
template double l2_norm<float>(const float*, int64_t);
template double l2_norm<double>(const double*, int64_t);

}  // namespace blocklab
