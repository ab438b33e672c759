#include "lab/tasks.h"

#include <algorithm>

#include "engine/rng.h"

namespace blocklab::lab {

std::string_view name_of(TaskKind kind) {
  switch (kind) {
    case TaskKind::copy: return "copy";
    case TaskKind::reverse: return "reverse";
    case TaskKind::sort: return "sort";
    case TaskKind::chars: return "chars";
  }
  return "?";
}

std::optional<TaskKind> parse_task(std::string_view s) {
  for (TaskKind k : {TaskKind::copy, TaskKind::reverse, TaskKind::sort, TaskKind::chars})
    if (s == name_of(k)) return k;
  return std::nullopt;
}

Result<Task> Task::create(TaskKind kind, int64_t seq_len) {
  if (seq_len < 1) return Status::error("seq_len: expected an integer >= 1, got " + std::to_string(seq_len));
  Task task(kind, seq_len);
  if (kind == TaskKind::chars) {
    const std::string_view text = chars_text();
    std::string alphabet(text);
    std::sort(alphabet.begin(), alphabet.end());
    alphabet.erase(std::unique(alphabet.begin(), alphabet.end()), alphabet.end());
    task.alphabet_ = alphabet;
    for (char c : text) task.text_ids_.push_back(int32_t(alphabet.find(c)));
    if (int64_t(text.size()) < seq_len + 1)
      return Status::error("seq_len: expected at most " + std::to_string(text.size() - 1) +
                           " for the chars task's text, got " + std::to_string(seq_len));
  }
  return task;
}

int64_t Task::vocab_size() const { return kind_ == TaskKind::chars ? int64_t(alphabet_.size()) : 10; }

Batch Task::batch(uint64_t seed, int64_t step, int64_t batch_size) const {
  return make_batch(mix64(seed * 2 + 0) ^ mix64(uint64_t(step)), batch_size);
}

Batch Task::eval_batch(uint64_t seed, int64_t index, int64_t batch_size) const {
  return make_batch(mix64(seed * 2 + 1) ^ mix64(uint64_t(index) + 0x5EEDull), batch_size);
}

Batch Task::make_batch(uint64_t stream, int64_t batch_size) const {
  Rng rng(stream);
  Batch b;
  b.batch = batch_size;
  b.seq_len = seq_len_;
  const int64_t T = seq_len_;
  b.tokens.resize(size_t(batch_size * T));
  b.targets.resize(b.tokens.size());
  for (int64_t s = 0; s < batch_size; ++s) {
    int32_t* in = b.tokens.data() + s * T;
    int32_t* out = b.targets.data() + s * T;
    switch (kind_) {
      case TaskKind::copy:
        for (int64_t t = 0; t < T; ++t) in[t] = out[t] = int32_t(rng.below(5));
        break;
      case TaskKind::reverse:
        for (int64_t t = 0; t < T; ++t) in[t] = int32_t(rng.below(10));
        for (int64_t t = 0; t < T; ++t) out[t] = in[T - 1 - t];
        break;
      case TaskKind::sort:
        for (int64_t t = 0; t < T; ++t) in[t] = int32_t(rng.below(10));
        std::copy(in, in + T, out);
        std::sort(out, out + T);
        break;
      case TaskKind::chars: {
        const uint64_t start = rng.below(uint64_t(text_ids_.size()) - uint64_t(T));
        for (int64_t t = 0; t < T; ++t) {
          in[t] = text_ids_[start + size_t(t)];
          out[t] = text_ids_[start + size_t(t) + 1];
        }
        break;
      }
    }
  }
  return b;
}

std::string Task::decode(const std::vector<int32_t>& tokens) const {
  std::string out;
  for (int32_t t : tokens) out += (kind_ == TaskKind::chars && t >= 0 && t < int32_t(alphabet_.size())) ? alphabet_[size_t(t)] : char('0' + t % 10);
  return out;
}

Result<std::vector<int32_t>> Task::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < text.size(); ++i) {
    const size_t pos = alphabet_.find(text[i]);
    if (pos == std::string::npos)
      return Status::error("text[" + std::to_string(i) + "]: expected a character of the model's alphabet, got '" +
                           std::string(1, text[i]) + "'");
    ids.push_back(int32_t(pos));
  }
  return ids;
}

}  // namespace blocklab::lab
