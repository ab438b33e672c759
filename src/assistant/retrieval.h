// Retrieval over the lessons: SQLite FTS5 (BM25, Porter stemming) on each section's title, keywords and
// text, after one normalisation of both the text and the question (canonical_words): lower case, the
// words learners use for the same thing made one ("layer norm", "LN" -> layernorm; "skip connection" ->
// residual; "MLP", "feed-forward" -> ffn; ...), British spellings as American. A question's words that
// no section has are corrected to the nearest word that one has (edit distance 1, or 2 for long words),
// and what stays unknown counts against answering: see Query::coverage.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "assistant/lessons.h"
#include "engine/status.h"

struct sqlite3;

namespace blocklab::assistant {

// The text as the index sees it: lower-case words, synonyms made one, LaTeX commands dropped.
std::vector<std::string> canonical_words(std::string_view text);
// The same words without the function words and question words ("what", "why", "the", "does", ...).
std::vector<std::string> content_words(std::string_view text);

struct Hit {
  const Section* section = nullptr;
  double score = 0;    // higher is better (BM25, negated; this page's sections boosted)
  double support = 0;  // the share of the question's weight whose words this section has
};

struct Query {
  struct Term {
    std::string word;       // as asked (canonical)
    std::string matched;    // what the index knows it as: the word, a correction, or "" (unknown)
    double weight = 0;      // inverse document frequency (an unknown word: the highest there is)
    int64_t sections = 0;   // how many sections have it
    bool common = false;    // a common English word ("roughly", "value"): ranks only when nothing else does
  };
  std::vector<Term> terms;
  // The share of the question's weight that the lessons know: 1 when every content word is in some
  // section, near 0 when the rare words are all unknown ("capital of France").
  double coverage = 0;
  // Whether the known words say something: two of them, or one that is in at most half the sections.
  bool informative = false;
  std::vector<std::string> known() const;
  double total_weight() const;
};

class LessonIndex {
 public:
  static Result<std::unique_ptr<LessonIndex>> build(std::vector<LessonPage> pages);
  ~LessonIndex();
  LessonIndex(const LessonIndex&) = delete;
  LessonIndex& operator=(const LessonIndex&) = delete;

  Query analyse(std::string_view question) const;
  // The best `k` sections for the query's known words; `page`'s own sections weigh 1.25x.
  std::vector<Hit> search(const Query& q, const std::string& page, int k) const;
  // The sections of one page, best first for the query (all of them, in file order when nothing matches).
  std::vector<Hit> search_page(const Query& q, const std::string& page, int k) const;

  const std::vector<LessonPage>& pages() const { return pages_; }
  const LessonPage* page(const std::string& id) const;
  const Section* section(const std::string& key) const;  // "layernorm#why"
  size_t section_count() const { return sections_.size(); }

 private:
  LessonIndex() = default;
  int64_t document_frequency(const std::string& word) const;  // REQUIRES: mu_ held (or no other thread yet)
  int64_t fts_count(const std::string& word) const;           // sections matching it (Porter-stemmed)
  std::vector<Hit> run(const Query& q, const std::string& page, int k, bool only_page) const;

  std::vector<LessonPage> pages_;
  std::vector<const Section*> sections_;  // the FTS rowid - 1
  std::vector<std::string> vocabulary_;   // every canonical word of the lessons, for corrections
  std::unordered_map<std::string, int64_t> vocabulary_df_;  // their section counts
  mutable std::mutex mu_;                 // one connection, used by every handler thread
  sqlite3* db_ = nullptr;
};

}  // namespace blocklab::assistant
