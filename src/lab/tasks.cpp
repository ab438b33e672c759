#include "lab/tasks.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "engine/rng.h"
#include "io/token_file.h"

namespace blocklab::lab {

std::string_view name_of(TaskKind kind) {
  switch (kind) {
    case TaskKind::copy: return "copy";
    case TaskKind::reverse: return "reverse";
    case TaskKind::sort: return "sort";
    case TaskKind::chars: return "chars";
    case TaskKind::text: return "text";
  }
  return "?";
}

std::optional<TaskKind> parse_task(std::string_view s) {
  for (TaskKind k : {TaskKind::copy, TaskKind::reverse, TaskKind::sort, TaskKind::chars, TaskKind::text})
    if (s == name_of(k)) return k;
  return std::nullopt;
}

Result<Task> Task::create(TaskKind kind, int64_t seq_len, const DataSpec& data) {
  if (seq_len < 1) return Status::error("seq_len: expected an integer >= 1, got " + std::to_string(seq_len));
  Task task(kind, seq_len);
  if (kind == TaskKind::text) {
    if (data.path.empty()) return Status::error("--data: the text task trains on a data file; expected --data FILE");
    if (!(data.held_out > 0 && data.held_out <= 0.5))
      return Status::error("--held-out: expected a fraction in (0, 0.5], got " + nlohmann::json(data.held_out).dump());
    Result<io::TokenFile> file = io::read_token_file(data.path);
    if (!file) return file.status().with_context("--data");
    if (!data.hash.empty() && data.hash != file->hash)
      return Status::error("--data " + data.path + ": expected the file the run started with (hash " + data.hash +
                           "), got other bytes (hash " + file->hash + ")");
    const int64_t n = int64_t(file->ids.size());
    const int64_t held = int64_t(double(n) * data.held_out);
    // Each part needs one window of seq_len inputs and the target after them.
    if (held < seq_len + 1 || n - held < seq_len + 1)
      return Status::error("--data " + data.path + ": expected at least " + std::to_string(seq_len + 1) +
                           " tokens in each part (training, and the " + nlohmann::json(data.held_out).dump() +
                           " held out) for --seq-len " + std::to_string(seq_len) + ", got " + std::to_string(n - held) +
                           " and " + std::to_string(held) + " of " + std::to_string(n));
    task.text_ids_ = std::move(file->ids);
    task.split_ = n - held;
    task.vocab_ = file->vocab_size;
    task.alphabet_ = file->alphabet.value_or("");
    task.data_hash_ = file->hash;
    return task;
  }
  if (kind == TaskKind::chars) {
    const std::string_view text = chars_text();
    std::string alphabet(text);
    std::sort(alphabet.begin(), alphabet.end());
    alphabet.erase(std::unique(alphabet.begin(), alphabet.end()), alphabet.end());
    task.alphabet_ = alphabet;
    for (char c : text) task.text_ids_.push_back(int32_t(alphabet.find(c)));
    task.vocab_ = int64_t(alphabet.size());
    if (int64_t(text.size()) < seq_len + 1)
      return Status::error("seq_len: expected at most " + std::to_string(text.size() - 1) +
                           " for the chars task's text, got " + std::to_string(seq_len));
  }
  return task;
}

int64_t Task::vocab_size() const { return vocab_; }

Batch Task::batch(uint64_t seed, int64_t step, int64_t batch_size) const {
  return make_batch(mix64(seed * 2 + 0) ^ mix64(uint64_t(step)), batch_size, false);
}

Batch Task::eval_batch(uint64_t seed, int64_t index, int64_t batch_size) const {
  return make_batch(mix64(seed * 2 + 1) ^ mix64(uint64_t(index) + 0x5EEDull), batch_size, true);
}

Batch Task::make_batch(uint64_t stream, int64_t batch_size, bool held_out) const {
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
      case TaskKind::text: {  // a window inside one part: training windows never read a held-out token
        const uint64_t begin = held_out ? uint64_t(split_) : 0;
        const uint64_t end = held_out ? uint64_t(text_ids_.size()) : uint64_t(split_);
        const uint64_t start = begin + rng.below(end - begin - uint64_t(T));
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
  if (!alphabet_.empty()) {
    for (int32_t t : tokens) out += t >= 0 && t < int32_t(alphabet_.size()) ? alphabet_[size_t(t)] : '?';
    return out;
  }
  if (kind_ == TaskKind::text) {  // ids: the numbers
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + std::to_string(tokens[i]);
    return out;
  }
  for (int32_t t : tokens) out += char('0' + t % 10);
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
