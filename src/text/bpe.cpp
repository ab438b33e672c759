#include "text/bpe.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <queue>

namespace blocklab::text {

void bpe_merge_rescan(std::vector<int32_t>& s, const MergeTable& table) {
  while (s.size() > 1) {
    // The lowest-ranked pair of the word as it is now.
    const Merge* best = nullptr;
    int32_t left = 0, right = 0;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const Merge* m = table.find(s[i], s[i + 1]);
      if (m != nullptr && (best == nullptr || m->rank < best->rank)) {
        best = m;
        left = s[i];
        right = s[i + 1];
      }
    }
    if (best == nullptr) return;
    // Every occurrence of it, left to right, in one pass over the word.
    size_t out = 0;
    for (size_t i = 0; i < s.size();) {
      if (i + 1 < s.size() && s[i] == left && s[i + 1] == right) {
        s[out++] = best->merged;
        i += 2;
      } else {
        s[out++] = s[i++];
      }
    }
    s.resize(out);
  }
}

// The same merges from a heap of candidate pairs, ordered by (rank, position). The symbols form a linked list
// over their first positions; a candidate is checked when it comes off the heap (its left symbol still there,
// and the pair still the one of that rank: a rank names one pair). encoder.py merges every occurrence of the
// chosen pair before it looks for the next lowest: so the pairs a merge makes wait in `made` until the heap has
// no candidate of the current rank left (one made below it would otherwise come first; none is of it, since a
// merged symbol differs from both of its parts).
void bpe_merge_heap(std::vector<int32_t>& s, const MergeTable& table) {
  const int32_t n = int32_t(s.size());
  if (n < 2) return;
  struct Candidate {
    int32_t rank, pos;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<int32_t> next(n), prev(n);
  std::vector<char> alive(n, 1);
  for (int32_t i = 0; i < n; ++i) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  std::vector<Candidate> initial;
  initial.reserve(n);
  for (int32_t i = 0; i + 1 < n; ++i)
    if (const Merge* m = table.find(s[i], s[i + 1])) initial.push_back({m->rank, i});
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap(std::greater<Candidate>(),
                                                                                        std::move(initial));
  std::vector<Candidate> made;
  int32_t current = std::numeric_limits<int32_t>::min();
  for (;;) {
    if (!made.empty() && (heap.empty() || heap.top().rank != current)) {
      for (const Candidate& c : made) heap.push(c);
      made.clear();
    }
    if (heap.empty()) break;
    const Candidate c = heap.top();
    heap.pop();
    current = c.rank;
    const int32_t left = c.pos, right = alive[left] ? next[left] : -1;
    if (right < 0) continue;
    const Merge* m = table.find(s[left], s[right]);
    if (m == nullptr || m->rank != c.rank) continue;  // stale: one of its symbols has merged since
    s[left] = m->merged;
    alive[right] = 0;
    next[left] = next[right];
    if (next[left] >= 0) prev[next[left]] = left;
    if (prev[left] >= 0)
      if (const Merge* p = table.find(s[prev[left]], s[left])) made.push_back({p->rank, prev[left]});
    if (next[left] >= 0)
      if (const Merge* p = table.find(s[left], s[next[left]])) made.push_back({p->rank, left});
  }
  int32_t out = 0;
  for (int32_t i = 0; i >= 0; i = next[i]) s[out++] = s[i];
  s.resize(out);
}

void bpe_merge(std::vector<int32_t>& symbols, const MergeTable& table) {
  if (symbols.size() <= kBpeRescanMaxSymbols)
    bpe_merge_rescan(symbols, table);
  else
    bpe_merge_heap(symbols, table);
}

}  // namespace blocklab::text
