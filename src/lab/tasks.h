// The built-in training tasks. A batch is a pure function of (seed, step), so a run is reproducible
// and a resumed run sees exactly the batches it would have seen.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"

namespace blocklab::lab {

enum class TaskKind {
  copy,     // the seeds' copy task: vocabulary 10, inputs from tokens 0..4, target = input
  reverse,  // vocabulary 10, inputs 0..9, target = the input reversed
  sort,     // vocabulary 10, inputs 0..9, target = the input sorted
  chars,    // next-character prediction on data/chars.txt (needs a causal model)
  text,     // next-token prediction on the user's own data (train --data FILE; needs a causal model)
};

// The data of the text task: a file (io/token_file.h: text bytes, .npy or .safetensors ids) and the part of
// it held out. The first (1 - held_out) of the tokens are for training, the rest only for the final figures.
struct DataSpec {
  std::string path;
  double held_out = 0.1;  // in (0, 0.5]
  std::string hash;       // the file's when the run started ("" before); a resumed run requires the same
};

std::string_view name_of(TaskKind kind);
std::optional<TaskKind> parse_task(std::string_view s);

struct Batch {
  std::vector<int32_t> tokens, targets;  // [batch, seq_len]
  int64_t batch = 0, seq_len = 0;
};

class Task {
 public:
  // `data` is the text task's (ignored by the others).
  static Result<Task> create(TaskKind kind, int64_t seq_len, const DataSpec& data = {});

  TaskKind kind() const { return kind_; }
  int64_t vocab_size() const;
  int64_t seq_len() const { return seq_len_; }
  // True when the targets are later inputs: the model must be causal or it can read the answer.
  bool needs_causal() const { return kind_ == TaskKind::chars || kind_ == TaskKind::text; }

  // The training batch of step `step` (1-based) for `seed`.
  Batch batch(uint64_t seed, int64_t step, int64_t batch_size) const;
  // Held-out batches for the final figures: a stream no training step draws from.
  Batch eval_batch(uint64_t seed, int64_t index, int64_t batch_size) const;

  // chars, and text read from a text file: the alphabet (sorted distinct bytes of the text); token i is
  // alphabet()[i]. Empty for ids.
  const std::string& alphabet() const { return alphabet_; }
  // text: the data file's hash, and how many tokens train and how many are held out.
  const std::string& data_hash() const { return data_hash_; }
  int64_t train_tokens() const { return split_; }
  int64_t held_out_tokens() const { return int64_t(text_ids_.size()) - split_; }
  std::string decode(const std::vector<int32_t>& tokens) const;
  // Token ids of `text` (chars task); characters outside the alphabet are an error.
  Result<std::vector<int32_t>> encode(std::string_view text) const;

 private:
  Task(TaskKind kind, int64_t seq_len) : kind_(kind), seq_len_(seq_len) {}
  Batch make_batch(uint64_t stream, int64_t batch_size, bool held_out) const;

  TaskKind kind_;
  int64_t seq_len_;
  std::string alphabet_;
  std::vector<int32_t> text_ids_;  // chars, text: the whole text as ids
  int64_t split_ = 0;              // text: ids before it train, ids from it are held out
  int64_t vocab_ = 10;
  std::string data_hash_;
};

// The text of the chars task (data/chars.txt, compiled in).
std::string_view chars_text();

}  // namespace blocklab::lab
