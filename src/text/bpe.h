// Byte-pair merging on token ids: the inner loop of GPT-2's tokenizer (gpt2_tokenizer.h). No I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace blocklab::text {

// What a pair of adjacent symbols merges into, and how early: the lower the rank, the earlier the merge.
struct Merge {
  int32_t rank = 0;
  int32_t merged = 0;  // the id of the merged symbol
};

// The merges of a merges file (merges.txt / vocab.bpe), keyed by the pair of ids. A pair has one rank and
// every rank belongs to one pair (the line number).
class MergeTable {
 public:
  // Sets the merge of (left, right); a pair set twice keeps the later one, as GPT-2's dict of ranks does.
  void set(int32_t left, int32_t right, Merge merge) { merges_[key(left, right)] = merge; }
  const Merge* find(int32_t left, int32_t right) const {
    const auto it = merges_.find(key(left, right));
    return it == merges_.end() ? nullptr : &it->second;
  }
  size_t size() const { return merges_.size(); }
  void reserve(size_t n) { merges_.reserve(n); }

 private:
  static uint64_t key(int32_t left, int32_t right) {
    return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
  }
  std::unordered_map<uint64_t, Merge> merges_;
};

// GPT-2's bpe(): while some adjacent pair of `symbols` has a rank, merge every occurrence of the lowest-ranked
// pair, left to right (in "a a a" the first two), then look again. `symbols` holds a word's symbols on entry
// and its merged symbols on exit.
void bpe_merge(std::vector<int32_t>& symbols, const MergeTable& table);

// The two ways bpe_merge computes it (it picks by length), public for the tests that check they agree:
// one rescan of the word per merge, as encoder.py does (quadratic in the length; the fastest on short words),
// and a heap of candidate pairs (n log n: a word of a million letters takes a second, not a day).
void bpe_merge_rescan(std::vector<int32_t>& symbols, const MergeTable& table);
void bpe_merge_heap(std::vector<int32_t>& symbols, const MergeTable& table);

// Words up to this many symbols take the rescan.
inline constexpr size_t kBpeRescanMaxSymbols = 48;

}  // namespace blocklab::text
