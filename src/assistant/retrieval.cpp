#include "assistant/retrieval.h"

#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <set>
#include <unordered_set>

namespace blocklab::assistant {

namespace {

// Phrases learners use for one thing, and the words the index keeps for it (applied in this order, on
// lower-case text; pre/post before the bare norm names).
const std::vector<std::pair<std::regex, std::string>>& synonyms() {
  static const std::vector<std::pair<std::regex, std::string>> kTable = [] {
    const std::vector<std::pair<const char*, const char*>> rules = {
        {R"(\bpre[ -]?(ln|norm|layer ?norm|normali[sz]ation)s?\b)", " prenorm pre norm "},
        {R"(\bpost[ -]?(ln|norm|layer ?norm|normali[sz]ation)s?\b)", " postnorm post norm "},
        {R"(\blayer[ -]?normali[sz]ations?\b|\blayer[ -]?norms?\b|\bln[12f]?\b)", " layernorm norm "},
        {R"(\blayernorms?\b)", " layernorm norm "},
        {R"(\brms[ -]?norms?\b|\brmsnorms?\b|\broot[ -]mean[ -]square\b|\brms\b)", " rmsnorm norm "},
        {R"(\bbatch[ -]?normali[sz]ations?\b|\bbatch[ -]?norms?\b|\bbatchnorms?\b|\bbn\b)", " batchnorm norm "},
        {R"(\bskip[ -]?conn(ection)?s?\b|\bshort[ -]?cuts?\b|\bresidual[ -]connections?\b|\bresid\b|\bresiduals\b|\bskips?\b)", " residual "},
        {R"(\bfeed[ -]?forward( networks?| layers?| nets?)?\b|\bmlps?\b|\bffns?\b|\bposition[ -]?wise\b|\bper[ -]token\b)", " ffn "},
        {R"(\bwarm[ -]?ups?\b)", " warmup "},
        {R"(\btak(e|es|ing) out\b|\bget(ting)? rid of\b|\bremov(e|es|ed|ing|al)\b|\bdrop(s|ped|ping)? (the|a|my)?\b|\bablat(e|es|ed|ing|ions?)\b|\bwithout\b|\bw/o\b)", " ablation "},
        {R"(\bself[ -]?attention\b|\battn\b)", " attention "},
        {R"(\bback[ -]?prop(agation)?\b)", " backprop gradient "},
        {R"(\bgrads?\b)", " gradient "},
        {R"(\bd_?ff\b|\bhidden[ -](size|width|dim|dimension|layer size)\b)", " dff "},
        {R"(\bd_?model\b|\bmodel[ -](width|dim|dimension)\b|\bembedding[ -](size|dim|dimension)\b)", " dmodel "},
        {R"(\bnon[ -]?linear(ity|ities)?\b)", " nonlinearity activation "},
        {R"(\bgaussian error linear units?\b)", " gelu "},
        {R"(\brectified linear( units?)?\b)", " relu "},
        {R"(\bstandard[ -]deviations?\b|\bstdev\b|\bstd\b)", " std "},
        {R"(\bvar\b)", " variance "},
        {R"(\beps\b)", " epsilon "},
        {R"(\bcentre\b)", " center "},
        {R"(\bcentr(ing|ed|es)\b)", " center$1 "},
        {R"(\bdp\b)", " dynamic programming "},
        {R"(\bflops\b)", " flop "},
        {R"(\bparams\b)", " parameters "},
        {R"(\b(\w{4,})is(e|es|ed|ing|ation|ations)\b)", "$1iz$2"},
    };
    std::vector<std::pair<std::regex, std::string>> t;
    for (const auto& [p, r] : rules) t.emplace_back(std::regex(p, std::regex::optimize), r);
    return t;
  }();
  return kTable;
}

const std::unordered_set<std::string>& stop_words() {
  static const std::unordered_set<std::string> kWords = {
      "a", "about", "actually", "after", "again", "all", "also", "am", "an", "and", "any", "anyway", "are", "as", "at",
      "basically", "be", "because", "been", "before", "being", "between", "both", "but", "by", "can", "cant", "could",
      "did", "do", "does", "doesnt", "doing", "dont", "each", "eli5", "else", "even", "exactly", "explain", "for",
      "from", "get", "gets", "getting", "give", "go", "goes", "going", "got", "had", "happen", "happened", "happens",
      "has", "have", "having", "he", "hello", "help", "her", "here", "hey", "hi", "him", "his", "how", "i", "if", "im",
      "in", "into", "is", "isnt", "it", "its", "just", "kind", "know", "let", "lets", "like", "me", "mean", "means",
      "meant", "more", "most", "much", "my", "need", "needs", "no", "not", "now", "of", "ok", "okay", "on", "one",
      "only", "or", "other", "our", "out", "please", "pls", "plz", "point", "purpose", "quick", "quickly", "really",
      "role", "said", "say", "says", "see", "shall", "she", "should", "show", "simple", "simply", "so", "some",
      "something", "sort", "still", "stuff", "such", "sure", "tell", "than", "thank", "thanks", "that", "thats",
      "the", "their", "them", "then", "there", "these", "they", "thing", "things", "think", "this", "those", "thx",
      "to", "too", "u", "understand", "up", "us", "use", "used", "uses", "using", "very", "vs", "versus", "want",
      "was", "way", "we", "well", "were", "what", "whats", "when", "where", "whether", "which", "while", "who",
      "whom", "whose", "why", "will", "with", "without", "work", "works", "would", "wrong", "yeah", "yes", "you",
      "your", "ur", "r", "pls", "someone", "anything", "everything", "write", "wondering", "confused", "dumb",
      "question", "questions", "answer", "ask", "asking", "same", "different", "difference", "compare", "exist",
      "exists", "diff", "matter", "matters", "good", "bad", "better", "best", "worse", "do", "done", "make", "makes", "made",
      "page", "widget", "here", "again", "am", "tho", "though", "via"};
  return kWords;
}

// Common English words: when the lessons do not have one, it says nothing about the topic ("walk me
// through", "everyone forgets"); a rare word the lessons do not have does ("brain", "France", "schema").
const std::unordered_set<std::string>& common_words() {
  static const std::unordered_set<std::string> kWords = {
      "among", "another", "answer", "anybody", "anyone", "anything", "anywhere", "apart", "appear", "area", "around", "ask", "away", "back",
      "bad", "become", "becomes", "began", "begin", "behind", "believe", "below", "beside", "besides", "best", "big", "bit", "body",
      "book", "bring", "brought", "build", "built", "buy", "call", "called", "came", "care", "carry", "case", "cause",
      "certain", "chance", "change", "changed", "changes", "child", "children", "city", "clear", "clearly", "close", "come", "comes", "coming",
      "common", "country", "couple", "course", "cut", "day", "days", "deal", "dear", "decide", "different", "door", "down",
      "during", "early", "easy", "eat", "end", "enough", "entire", "especially", "ever", "every", "everybody", "everyone", "everywhere", "eye",
      "face", "fact", "fair", "fall", "family", "far", "fast", "feel", "felt", "few", "find", "fine", "finish", "first",
      "five", "follow", "food", "forget", "forgets", "forgot", "forgotten", "form", "found", "four", "free", "friend", "friends", "front",
      "full", "fun", "game", "gave", "general", "girl", "given", "glad", "goes", "gone", "great", "ground", "group",
      "guess", "guy", "guys", "hand", "hands", "happy", "hard", "head", "hear", "heard", "heart", "high", "hold",
      "home", "hope", "hour", "house", "huge", "idea", "ideal", "important", "instead", "interest", "interesting", "issue", "job", "keep",
      "kept", "kids", "knew", "known", "large", "last", "late", "later", "least", "leave", "left", "less", "life", "light",
      "likely", "line", "little", "live", "long", "look", "looked", "looking", "looks", "lose", "lost", "lot", "lots", "love",
      "low", "main", "man", "many", "may", "maybe", "meet", "men", "might", "mind", "miss", "moment", "money", "month",
      "months", "morning", "move", "mr", "mrs", "ms", "name", "near", "nearly", "never", "next", "nice", "night", "nobody",
      "none", "nor", "nothing", "number", "often", "old", "once", "open", "order", "others", "otherwise", "over", "own", "part",
      "past", "people", "perhaps", "person", "picture", "place", "plan", "play", "player", "possible", "power", "pretty", "probably", "problem",
      "problems", "pull", "put", "quite", "rather", "read", "ready", "real", "reason", "remember", "rest", "result", "right", "room",
      "saw", "school", "seem", "seemed", "seems", "seen", "sense", "set", "several", "short", "side", "since",
      "small", "someone", "sometimes", "son", "soon", "sorry", "sound", "speak", "special", "start", "started", "stay", "step", "steps",
      "stop", "story", "student", "study", "sudden", "sure", "take", "taken", "takes", "taking", "talk", "teacher", "team", "ten",
      "thought", "three", "through", "thus", "time", "times", "today", "together", "told", "tomorrow", "took", "top", "toward", "town",
      "tried", "true", "try", "trying", "turn", "twice", "two", "type", "under", "until", "upon", "usual", "usually", "value",
      "view", "wait", "walk", "wanted", "watch", "water", "week", "weeks", "went", "whole", "wife", "win", "woman", "women",
      "won", "wonder", "word", "words", "world", "worry", "year", "years", "yes", "yesterday", "yet", "young",
      "roughly", "approximately", "sit", "sits", "sitting", "button", "buttons", "click", "clicked", "clicking", "slider", "sliders", "toggle", "toggled", "menu", "screen", "scroll"};
  return kWords;
}

std::string lower_ascii_greek(std::string_view text) {
  static const std::vector<std::pair<std::string, std::string>> kGreek = {
      {"μ", " mu mean "}, {"σ", " sigma std "}, {"γ", " gamma "}, {"β", " beta "}, {"α", " alpha "}, {"ε", " epsilon "},
      {"Δ", " delta "},   {"δ", " delta "},     {"’", "'"},         {"‘", "'"},     {"“", "\""},    {"”", "\""},
      {"—", " "},         {"–", " "}};
  std::string s(text);
  for (const auto& [from, to] : kGreek) {
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  }
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

size_t edit_distance(const std::string& a, const std::string& b, size_t cap) {
  // Damerau-Levenshtein (optimal string alignment), stopping early past `cap`.
  if (a.size() > b.size() + cap || b.size() > a.size() + cap) return cap + 1;
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t row_min = cap + 1;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      row_min = std::min(row_min, d[i][j]);
    }
    if (row_min > cap) return cap + 1;
  }
  return d[a.size()][b.size()];
}

bool is_number(const std::string& w) {
  return !w.empty() && std::all_of(w.begin(), w.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

std::string fts_quote(const std::string& w) { return "\"" + w + "\""; }  // words are [a-z0-9]: nothing to escape

}  // namespace

std::vector<std::string> canonical_words(std::string_view text) {
  std::string s = lower_ascii_greek(text);
  static const std::regex kLatex(R"(\\[a-z]+)"), kJoin(R"(\b([a-z]+)-(\d+)\b)");
  s = std::regex_replace(s, kLatex, " ");
  s = std::regex_replace(s, kJoin, "$1$2");  // gpt-2 -> gpt2, so "gpt-4" is not "gpt" and "4"
  for (const auto& [re, to] : synonyms()) s = std::regex_replace(s, re, to);
  std::vector<std::string> words;
  std::string w;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c))) w += c;
    else if (c == '\'') continue;  // what's -> whats
    else if (!w.empty()) {
      words.push_back(std::move(w));
      w.clear();
    }
  }
  if (!w.empty()) words.push_back(std::move(w));
  return words;
}

std::vector<std::string> content_words(std::string_view text) {
  std::vector<std::string> out;
  for (std::string& w : canonical_words(text))
    if (!stop_words().count(w) && !is_number(w) && w.size() > 1) out.push_back(std::move(w));
  return out;
}

double Query::total_weight() const {
  double w = 0;
  for (const Term& t : terms) w += t.weight;
  return w;
}

std::vector<std::string> Query::known() const {
  std::vector<std::string> out;
  for (const Term& t : terms)
    if (!t.matched.empty()) out.push_back(t.matched);
  return out;
}

LessonIndex::~LessonIndex() {
  if (db_) sqlite3_close(db_);
}

static std::string joined(const std::vector<std::string>& words) {
  std::string s;
  for (const std::string& w : words) s += (s.empty() ? "" : " ") + w;
  return s;
}

Result<std::unique_ptr<LessonIndex>> LessonIndex::build(std::vector<LessonPage> pages) {
  std::unique_ptr<LessonIndex> ix(new LessonIndex());
  ix->pages_ = std::move(pages);
  if (sqlite3_open_v2(":memory:", &ix->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK)
    return Status::error("the lessons' index: cannot open an in-memory SQLite database");
  char* err = nullptr;
  if (sqlite3_exec(ix->db_, "CREATE VIRTUAL TABLE s USING fts5(title, keywords, body, tokenize = 'porter unicode61')", nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string m = err ? err : "?";
    sqlite3_free(err);
    return Status::error("the lessons' index: this SQLite has no FTS5 (" + m + ")");
  }
  sqlite3_stmt* ins = nullptr;
  sqlite3_prepare_v2(ix->db_, "INSERT INTO s(rowid, title, keywords, body) VALUES (?, ?, ?, ?)", -1, &ins, nullptr);
  std::set<std::string> vocab;
  for (const LessonPage& p : ix->pages_) {
    for (const Section& s : p.sections) {
      ix->sections_.push_back(&s);
      std::string kw;
      for (const std::string& k : s.keywords) kw += k + ", ";
      const std::vector<std::string> t = canonical_words(s.title + " " + p.title), k = canonical_words(kw), b = canonical_words(s.body);
      for (const auto* ws : {&t, &k, &b})
        for (const std::string& w : *ws)
          if (!is_number(w)) vocab.insert(w);
      sqlite3_bind_int64(ins, 1, int64_t(ix->sections_.size()));
      const std::string jt = joined(t), jk = joined(k), jb = joined(b);
      sqlite3_bind_text(ins, 2, jt.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(ins, 3, jk.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(ins, 4, jb.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(ins) != SQLITE_DONE) {
        sqlite3_finalize(ins);
        return Status::error("the lessons' index: " + std::string(sqlite3_errmsg(ix->db_)));
      }
      sqlite3_reset(ins);
    }
  }
  sqlite3_finalize(ins);
  ix->vocabulary_.assign(vocab.begin(), vocab.end());
  // Each lesson word's section count, once: the typo correction weighs every candidate by it.
  for (const std::string& w : ix->vocabulary_) ix->vocabulary_df_[w] = ix->fts_count(w);
  return ix;
}

int64_t LessonIndex::document_frequency(const std::string& word) const {
  const auto it = vocabulary_df_.find(word);
  return it != vocabulary_df_.end() ? it->second : fts_count(word);
}

int64_t LessonIndex::fts_count(const std::string& word) const {
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db_, "SELECT count(*) FROM s WHERE s MATCH ?", -1, &st, nullptr);
  const std::string q = fts_quote(word);
  sqlite3_bind_text(st, 1, q.c_str(), -1, SQLITE_TRANSIENT);
  int64_t n = 0;
  if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return n;
}

Query LessonIndex::analyse(std::string_view question) const {
  std::lock_guard lock(mu_);
  Query q;
  const double N = double(sections_.size());
  auto idf = [N](double df) { return std::log((N - df + 0.5) / (df + 0.5) + 1.0); };
  std::set<std::string> seen;
  double total = 0, known = 0;
  int known_terms = 0;
  for (const std::string& w : content_words(question)) {
    if (!seen.insert(w).second) continue;
    Query::Term t;
    t.word = w;
    t.sections = document_frequency(w);
    if (t.sections == 0 && common_words().count(w)) continue;  // "everyone", "walk": no topic either way
    if (t.sections > 0) {
      t.matched = w;
    } else if (w.size() >= 4 && std::none_of(w.begin(), w.end(), [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)); })) {
      // (never "gpt4" -> "gpt2": a name with a number is another thing)
      // A typo? The nearest word the lessons (or the function words) have, the most common one on a tie.
      const size_t cap = w.size() >= 7 ? 2 : 1;
      size_t best_d = cap + 1;
      int64_t best_df = -1;
      std::string best;
      bool stop = false;
      size_t stop_d = cap + 1;
      for (const std::string& s : stop_words()) {
        if (s.size() < 4) continue;
        const size_t d = edit_distance(w, s, cap);
        if (d <= cap) stop = true, stop_d = std::min(stop_d, d);
      }
      for (const std::string& v : vocabulary_) {
        if (v[0] != w[0]) continue;  // typos keep the first letter; "brain" is not "train"
        if (common_words().count(v)) continue;  // "cake" is not a typo of "case"
        const size_t d = edit_distance(w, v, cap);
        if (d > cap || d > best_d) continue;
        const int64_t df = document_frequency(v);
        if (d < best_d || df > best_df) best_d = d, best_df = df, best = v;
      }
      if (stop && stop_d <= best_d) continue;  // "actualy": a function word, not a lesson's word
      if (!best.empty() && best_df > 0) {
        t.matched = best;
        t.sections = best_df;
      }
    }
    t.weight = idf(double(t.sections));
    t.common = common_words().count(w) > 0;
    if (t.common) t.weight = std::min(t.weight, 1.0);  // "old", "value": known, but not a topic
    total += t.weight;
    if (!t.matched.empty()) {
      known += t.weight;
      if (double(t.sections) <= N / 2) q.informative = true;
      ++known_terms;
    }
    q.terms.push_back(std::move(t));
  }
  q.coverage = total > 0 ? known / total : 0;
  if (known_terms >= 2) q.informative = true;
  return q;
}

std::vector<Hit> LessonIndex::run(const Query& q, const std::string& page, int k, bool only_page) const {
  std::vector<Hit> hits;
  std::string match;
  for (const bool with_common : {false, true}) {
    for (const Query::Term& t : q.terms)
      if (!t.matched.empty() && (with_common || !t.common)) match += (match.empty() ? "" : " OR ") + fts_quote(t.matched);
    if (!match.empty()) break;
  }
  if (!match.empty()) {
    std::lock_guard lock(mu_);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db_, "SELECT rowid, bm25(s, 4.0, 3.0, 1.0) FROM s WHERE s MATCH ?", -1, &st, nullptr);
    sqlite3_bind_text(st, 1, match.c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW) {
      const Section* s = sections_.at(size_t(sqlite3_column_int64(st, 0) - 1));
      if (only_page && s->page != page) continue;
      double score = -sqlite3_column_double(st, 1);
      if (s->page == page) score *= 1.25;
      hits.push_back({s, score});
    }
    sqlite3_finalize(st);
  }
  std::stable_sort(hits.begin(), hits.end(), [](const Hit& a, const Hit& b) { return a.score > b.score; });
  if (only_page && hits.empty()) {
    for (const Section* s : sections_)
      if (s->page == page) hits.push_back({s, 0});
  }
  if (int(hits.size()) > k) hits.resize(size_t(k));
  // Which of the question's words each hit has.
  const double total = q.total_weight();
  if (total > 0) {
    std::lock_guard lock(mu_);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db_, "SELECT count(*) FROM s WHERE s MATCH ? AND rowid = ?", -1, &st, nullptr);
    for (Hit& h : hits) {
      const int64_t rowid = int64_t(std::find(sections_.begin(), sections_.end(), h.section) - sections_.begin()) + 1;
      double have = 0;
      for (const Query::Term& t : q.terms) {
        if (t.matched.empty()) continue;
        const std::string m = fts_quote(t.matched);
        sqlite3_bind_text(st, 1, m.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, rowid);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) > 0) have += t.weight;
        sqlite3_reset(st);
      }
      h.support = have / total;
    }
    sqlite3_finalize(st);
  }
  return hits;
}

std::vector<Hit> LessonIndex::search(const Query& q, const std::string& page, int k) const { return run(q, page, k, false); }
std::vector<Hit> LessonIndex::search_page(const Query& q, const std::string& page, int k) const { return run(q, page, k, true); }

const LessonPage* LessonIndex::page(const std::string& id) const {
  for (const LessonPage& p : pages_)
    if (p.page == id) return &p;
  return nullptr;
}

const Section* LessonIndex::section(const std::string& key) const {
  for (const Section* s : sections_)
    if (s->key() == key) return s;
  return nullptr;
}

}  // namespace blocklab::assistant
