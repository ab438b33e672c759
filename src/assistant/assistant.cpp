#include "assistant/assistant.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <regex>
#include <set>

#include "engine/config.h"
#include "engine/kernels.h"
#include "server/compute.h"

namespace blocklab::assistant {

using server::ApiError;

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// ---- numbers in a question ------------------------------------------------------------------------

const char* const kNumber = R"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)";

struct Numbers {
  std::vector<std::vector<std::vector<double>>> matrices;  // [[..], [..]] as written
  std::vector<std::vector<double>> lists;                  // [..] (or (..)) not inside a matrix
  std::map<std::string, std::vector<double>> named_lists;  // x = [..], delta = [..]
  std::map<std::string, double> named;                     // eps, alpha, gamma, beta, dmodel, dff, tokens, layers, layer
  std::vector<double> loose;                               // the other numbers, in order
};

// A number as written; one too large for a double is ±inf (the engine then refuses it by name).
double number_value(const std::string& text) {
  try {
    return std::stod(text);
  } catch (const std::out_of_range&) {
    return text.find('-') == 0 ? -HUGE_VAL : HUGE_VAL;
  }
}

std::vector<double> parse_list(const std::string& inner) {
  static const std::regex kNum(kNumber);
  std::vector<double> out;
  for (auto it = std::sregex_iterator(inner.begin(), inner.end(), kNum); it != std::sregex_iterator(); ++it)
    out.push_back(number_value(it->str()));
  return out;
}

Numbers extract_numbers(const std::string& question) {
  Numbers n;
  std::string s = question;
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  // Greek names as words, so "α = 0.5" reads as "alpha = 0.5".
  for (const auto& [g, w] : std::vector<std::pair<std::string, std::string>>{
           {"α", "alpha"}, {"γ", "gamma"}, {"β", "beta"}, {"ε", "eps"}, {"δ", "delta"}, {"Δ", "delta"}, {"−", "-"}, {"×", "x"}}) {
    for (size_t at = s.find(g); at != std::string::npos; at = s.find(g, at + w.size())) s.replace(at, g.size(), w);
  }
  std::string rest = s;  // what is left once a number is taken (blanked with spaces)
  auto blank = [&rest](size_t pos, size_t len) { std::fill(rest.begin() + long(pos), rest.begin() + long(pos + len), ' '); };

  // Matrices [[...], [...]], then lists [...] or (...) with at least one comma, then named lists.
  static const std::regex kMatrix(R"(\[\s*\[[^\[\]]*\](?:\s*,?\s*\[[^\[\]]*\])*\s*\])");
  for (auto it = std::sregex_iterator(s.begin(), s.end(), kMatrix); it != std::sregex_iterator(); ++it) {
    std::vector<std::vector<double>> m;
    static const std::regex kRow(R"(\[([^\[\]]*)\])");
    const std::string body = it->str().substr(1, it->str().size() - 2);
    for (auto r = std::sregex_iterator(body.begin(), body.end(), kRow); r != std::sregex_iterator(); ++r) m.push_back(parse_list((*r)[1]));
    n.matrices.push_back(std::move(m));
    blank(size_t(it->position()), size_t(it->length()));
  }
  static const std::regex kNamedList(
      R"(\b(x|input|inputs|delta|dx|fx|f\(x\)|f|update|increment|sublayer output|sub-layer output)\s*(?:=|:|is|of)?\s*[\[\(]([^\[\]\(\)]*)[\]\)])");
  {
    const std::string r0 = rest;
    for (auto it = std::sregex_iterator(r0.begin(), r0.end(), kNamedList); it != std::sregex_iterator(); ++it) {
      std::string name = (*it)[1];
      if (name == "input" || name == "inputs") name = "x";
      if (name != "x") name = "delta";
      n.named_lists[name] = parse_list((*it)[2]);
      blank(size_t(it->position()), size_t(it->length()));
    }
  }
  static const std::regex kList(R"([\[\(]([^\[\]\(\)]*,[^\[\]\(\)]*)[\]\)]|\[([^\[\]]*)\])");
  {
    const std::string r0 = rest;
    for (auto it = std::sregex_iterator(r0.begin(), r0.end(), kList); it != std::sregex_iterator(); ++it) {
      const std::string inner = (*it)[1].matched ? std::string((*it)[1]) : std::string((*it)[2]);
      std::vector<double> v = parse_list(inner);
      if (!v.empty()) n.lists.push_back(std::move(v));
      blank(size_t(it->position()), size_t(it->length()));
    }
  }
  // Named scalars: "eps 1e-3", "alpha = 0.5", "d_model 512", "50 layers", "layer 3", "64 tokens".
  static const std::string num = std::string("(") + kNumber + ")";
  static const std::vector<std::pair<std::string, std::regex>> named = [] {
    std::vector<std::pair<std::string, std::regex>> out;
    for (const auto& [key, pattern] : std::vector<std::pair<std::string, std::string>>{
      {"eps", R"(\b(?:eps|epsilon)\s*(?:=|:|of|is)?\s*)" + num},
      {"alpha", R"(\balpha\s*(?:=|:|of|is)?\s*)" + num},
      {"gamma", R"(\bgamma\s*(?:=|:|of|is)?\s*)" + num},
      {"beta", R"(\bbeta\s*(?:=|:|of|is)?\s*)" + num},
      {"dff", R"(\b(?:d_ff|dff|d ff|d-ff|hidden(?: size| dim| width| units)?|inner(?: dim| size)?|ffn dim)\s*(?:=|:|of|is)?\s*)" + num},
      {"dmodel", R"(\b(?:d_model|dmodel|d model|d-model|model dim(?:ension)?|width|embedding(?: size| dim)?|d)\s*(?:=|:|of|is)?\s*)" + num},
      {"tokens", R"(^\s*(?:tokens?|positions?)\b)"},  // after a number (below)
      {"tokens", R"(\b(?:seq(?:uence)?[ _-]?len(?:gth)?|tokens|t)\s*(?:=|:)\s*)" + num},
      {"layers", R"(^\s*-?\s*(?:layers?|blocks?)\b(?:\s*deep)?)"},  // after a number (below)
      {"layers", R"(\b(?:depth|n_layers|layers|blocks)\s*(?:=|:|of|is)?\s*)" + num},
      {"layer", R"(\b(?:layer|block)\s*(?:=|:|#|no\.?|number)?\s*)" + num + R"(\b(?!\s*-?\s*layers?))"},
    })
      out.emplace_back(key, std::regex(pattern));  // compiled once, not per question
    return out;
  }();
  static const std::regex kLoose(kNumber);
  for (const auto& [key, re] : named) {
    if (n.named.count(key)) continue;
    const std::string r0 = rest;
    if (re.mark_count() == 0) {
      // "64 tokens", "50 layers": the first number followed by the words. Each number is tried once (a search for
      // number-then-words would restart inside every run of digits: quadratic in a hostile question).
      for (auto it = std::sregex_iterator(r0.begin(), r0.end(), kLoose); it != std::sregex_iterator(); ++it) {
        std::smatch after;
        const auto end = (*it)[0].second;
        if (!std::regex_search(end, r0.end(), after, re)) continue;
        n.named[key] = number_value(it->str());
        blank(size_t(it->position()), size_t(it->length() + after.length()));
        break;
      }
      continue;
    }
    std::smatch m;
    if (std::regex_search(r0, m, re)) {
      n.named[key] = number_value(m[1]);
      blank(size_t(m.position()), size_t(m.length()));
    }
  }
  for (auto it = std::sregex_iterator(rest.begin(), rest.end(), kLoose); it != std::sregex_iterator(); ++it) {
    const size_t at = size_t(it->position());
    if (at > 0 && (std::isalpha(static_cast<unsigned char>(rest[at - 1])) || rest[at - 1] == '_')) continue;
    if (at > 0 && rest[at - 1] == '-' && at > 1 && std::isalpha(static_cast<unsigned char>(rest[at - 2]))) continue;
    n.loose.push_back(number_value(it->str()));
  }
  return n;
}

// ---- saying numbers -------------------------------------------------------------------------------

json as_json(const std::vector<double>& v) {
  json a = json::array();
  for (double x : v) a.push_back(x);
  return a;
}
std::string say_list(const std::vector<double>& v, size_t max = 8) {
  std::string s = "[";
  for (size_t i = 0; i < v.size() && i < max; ++i) s += (i ? ", " : "") + say(v[i]);
  if (v.size() > max) s += ", …";
  return s + "]";
}
std::string url_list(const std::vector<double>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + shortest(v[i]);
  return s;
}
std::string url_matrix(const std::vector<std::vector<double>>& m) {
  std::string s;
  for (size_t i = 0; i < m.size(); ++i) s += (i ? ";" : "") + url_list(m[i]);
  return s;
}
std::vector<double> json_vec(const json& j) {
  std::vector<double> v;
  for (const json& x : j) v.push_back(x.is_number() ? x.get<double>() : NAN);
  return v;
}
double norm2(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

// ---- the answer being written ---------------------------------------------------------------------

struct Draft {
  Answer a;
  const LessonIndex* ix;
  void cite(const std::string& key, const std::vector<std::pair<std::string, std::string>>& state = {}) {
    const Section* s = ix->section(key);
    if (!s) return;  // a lesson renamed: the lessons' tests catch it
    for (const Citation& c : a.citations)
      if (c.section == key) return;
    a.citations.push_back({key, s->title, section_url(*s, state)});
  }
  void add(const std::string& what, json value, const std::string& formula) { a.computed.push_back({what, std::move(value), formula}); }
};

bool has(const std::set<std::string>& words, std::initializer_list<const char*> any) {
  for (const char* w : any)
    if (words.count(w)) return true;
  return false;
}

// The rows a norm question gives: a matrix, or several lists of one length, or one list.
std::vector<std::vector<double>> rows_of(const Numbers& n) {
  if (!n.matrices.empty()) return n.matrices[0];
  if (n.lists.size() >= 2 && std::all_of(n.lists.begin(), n.lists.end(), [&](const auto& l) { return l.size() == n.lists[0].size(); }))
    return n.lists;
  return {};
}

std::vector<double> one_vector(const Numbers& n) {
  if (!n.lists.empty()) return n.lists[0];
  if (n.named_lists.count("x")) return n.named_lists.at("x");
  return n.loose;
}

}  // namespace

std::string shortest(double v) {
  char buf[40];
  for (int p = 1; p <= 17; ++p) {
    std::snprintf(buf, sizeof buf, "%.*g", p, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

std::string say(double v) {
  if (!std::isfinite(v)) return v != v ? "not a number" : v > 0 ? "∞" : "−∞";
  char buf[40];
  if (v != 0 && (std::fabs(v) >= 1e6 || std::fabs(v) < 1e-4)) std::snprintf(buf, sizeof buf, "%.4e", v);
  else std::snprintf(buf, sizeof buf, "%.5g", v);
  std::string s = buf;
  if (s == "-0") s = "0";
  return s;
}

json Answer::to_json() const {
  json c = json::array(), k = json::array();
  for (const Citation& x : citations) c.push_back({{"section", x.section}, {"title", x.title}, {"url", x.url}});
  for (const Computed& x : computed) k.push_back({{"what", x.what}, {"value", x.value}, {"formula", x.formula}});
  json j = {{"status", status}, {"answer", answer}, {"citations", c}, {"computed", k}, {"source", source},
            {"intent", intent}, {"elapsed_ms", std::round(elapsed_ms * 1000) / 1000}};
  if (computation_ms >= 0) j["computation_ms"] = std::round(computation_ms * 1000) / 1000;
  return j;
}

Question read_question(const json& body) {
  server::reject_unknown_keys(body, {"question", "page", "context"});
  const json* q = server::optional_field(body, "question");
  if (!q || !q->is_string()) throw ApiError(400, "bad_request", "question: expected a string of 1 to 2000 characters", "question");
  Question out;
  out.text = q->get<std::string>();
  const size_t chars = server::utf8_length(out.text);
  if (chars < 1 || chars > 2000 || out.text.find_first_not_of(" \t\r\n") == std::string::npos)
    throw ApiError(400, "bad_request", "question: expected 1 to 2000 characters of text, got " + std::to_string(chars), "question");
  if (const json* p = server::optional_field(body, "page"); p && !p->is_null()) {
    if (!p->is_string()) throw ApiError(400, "bad_request", "page: expected a page id such as \"layernorm\"", "page");
    out.page = p->get<std::string>();
  }
  if (const json* c = server::optional_field(body, "context"); c && !c->is_null()) {
    if (!c->is_object()) throw ApiError(400, "bad_request", "context: expected an object (the page's state)", "context");
    out.context = *c;
  }
  return out;
}

Result<std::unique_ptr<Assistant>> Assistant::create(const server::ModelRegistry* models, server::Limits limits) {
  Result<std::vector<LessonPage>> pages = builtin_lessons();
  if (!pages) return pages.status();
  Result<std::unique_ptr<LessonIndex>> ix = LessonIndex::build(std::move(pages).value());
  if (!ix) return ix.status();
  std::unique_ptr<Assistant> a(new Assistant());
  a->index_ = std::move(ix).value();
  a->models_ = models;
  a->limits_ = limits;
  return a;
}

std::vector<const Section*> Assistant::passages(const Answer& a) const {
  std::vector<const Section*> out;
  for (const Citation& c : a.citations)
    if (const Section* s = index_->section(c.section)) out.push_back(s);
  return out;
}

namespace {

// ---- what the lessons say: sentences from the best section ------------------------------------------

std::vector<std::string> sentences_of(const std::string& body) {
  // Paragraphs and bullets, without display formulas; then sentences (not split inside $...$).
  std::vector<std::string> out;
  std::string para, display;
  bool in_display = false;
  auto flush = [&]() {
    std::string cur;
    bool in_math = false;
    for (size_t i = 0; i < para.size(); ++i) {
      const char c = para[i];
      cur += c;
      if (c == '$') in_math = !in_math;
      if (!in_math && (c == '.' || c == '?' || c == '!') && (i + 1 == para.size() || para[i + 1] == ' ')) {
        // "e.g." and "i.e." end no sentence
        const bool abbrev = cur.size() >= 4 && (cur.ends_with("e.g.") || cur.ends_with("i.e.") || cur.ends_with("vs."));
        if (!abbrev) {
          const size_t a = cur.find_first_not_of(' ');
          if (a != std::string::npos) out.push_back(cur.substr(a));
          cur.clear();
        }
      }
    }
    const size_t a = cur.find_first_not_of(' ');
    if (a != std::string::npos) out.push_back(cur.substr(a));
    para.clear();
  };
  size_t start = 0;
  while (start <= body.size()) {
    const size_t nl = std::min(body.find('\n', start), body.size());
    std::string line = body.substr(start, nl - start);
    start = nl + 1;
    const size_t a = line.find_first_not_of(' ');
    line = a == std::string::npos ? "" : line.substr(a);
    if (line == "$$") {
      in_display = !in_display;
      if (in_display) {
        flush();
        display.clear();
      } else if (!out.empty() && out.back().ends_with(":") && display.size() < 200) {
        out.back() += " $" + display + "$.";  // "... is computed as:" then its formula, inline
      }
      continue;
    }
    if (in_display) {
      display += (display.empty() ? "" : " ") + line;
      continue;
    }
    if (line.empty() || line.starts_with("- ")) {
      flush();
      if (line.starts_with("- ")) para = line.substr(2);
      continue;
    }
    para += (para.empty() ? "" : " ") + line;
  }
  flush();
  return out;
}

std::string display_formula(const std::string& body) {
  const size_t a = body.find("$$");
  if (a == std::string::npos) return "";
  const size_t b = body.find("$$", a + 2);
  if (b == std::string::npos) return "";
  std::string f = body.substr(a + 2, b - a - 2);
  while (!f.empty() && (f.front() == '\n' || f.front() == ' ')) f.erase(f.begin());
  while (!f.empty() && (f.back() == '\n' || f.back() == ' ')) f.pop_back();
  return f;
}

// The section's opening sentence and the ones sharing most words with the question, in the text's
// order, about 80 words at most.
std::string summary_of(const Section& s, const Query& q, bool with_formula) {
  const std::vector<std::string> ss = sentences_of(s.body);
  if (ss.empty()) return s.title + ".";
  std::set<std::string> want;
  for (const std::string& w : q.known()) want.insert(w);
  std::vector<std::pair<double, size_t>> scored;
  for (size_t i = 1; i < ss.size(); ++i) {
    std::set<std::string> words;
    for (const std::string& w : canonical_words(ss[i])) words.insert(w);
    double hits = 0;
    for (const std::string& w : want)
      for (const std::string& x : words)
        if (x == w || (w.size() >= 5 && x.starts_with(w.substr(0, w.size() - 1)))) {
          hits += 1;
          break;
        }
    scored.push_back({hits - 0.01 * double(i), i});
  }
  std::sort(scored.begin(), scored.end(), std::greater<>());
  std::set<size_t> pick = {0};
  size_t words = std::count(ss[0].begin(), ss[0].end(), ' ') + 1;
  for (const auto& [score, i] : scored) {
    if (score <= 0 || pick.size() >= 3) break;
    const size_t w = std::count(ss[i].begin(), ss[i].end(), ' ') + 1;
    if (words + w > 90) continue;
    pick.insert(i);
    words += w;
  }
  if (pick.size() == 1 && ss.size() > 1) pick.insert(1);
  std::string out;
  for (size_t i : pick) out += (out.empty() ? "" : " ") + ss[i];
  if (with_formula) {
    const std::string f = display_formula(s.body);
    if (!f.empty() && f.size() < 300) out += "\n\n$" + f + "$";
  }
  return out;
}

bool wants_formula(const std::set<std::string>& w) {
  return has(w, {"formula", "equation", "math", "maths", "defin", "definition", "define", "defined", "calculate", "compute", "computed", "derivation", "derive"});
}

}  // namespace

// ---- the engine's numbers, one kind of question at a time ----------------------------------------------

namespace {

struct Ctx {
  const Question& q;
  const Numbers& n;
  const std::set<std::string>& words;  // canonical words of the question
  const server::ModelRegistry* models;
  const server::Limits& limits;
  Draft& d;
};

double named_or(const Numbers& n, const char* key, double fallback) {
  auto it = n.named.find(key);
  return it == n.named.end() ? fallback : it->second;
}

void need_finite(const std::vector<double>& v, const std::string& what) {
  for (double x : v)
    if (!std::isfinite(x) || std::fabs(x) > 1e30)
      throw ApiError(400, "bad_request", "question: " + what + ": expected numbers within ±1e30, got " + say(x), "question");
}

void norm_state(std::vector<std::pair<std::string, std::string>>& st, const std::vector<std::vector<double>>& rows, double eps) {
  if (rows.size() <= 8 && !rows.empty() && rows[0].size() <= 8) st.emplace_back("x", url_matrix(rows));
  if (eps != 1e-5) st.emplace_back("eps", shortest(eps));
}

// Whether the question switches `what` off: "no norm", "without residuals", "remove the layernorm" — the
// cue's next few words up to a comma or "and" ("no norm, residuals on" negates the norm only).
bool negated(const std::string& q, const std::string& what) {
  static const std::vector<std::string> kNeg = {"no ", "without ", "w/o ", "remove ", "removing ", "removed ", "drop ", "dropping ", "ablate ", "ablating ", "turn off ", "disable ", "minus ", "take out ", "taking out ", "get rid of "};
  for (const std::string& n : kNeg) {
    for (size_t at = q.find(n); at != std::string::npos; at = q.find(n, at + 1)) {
      if (at > 0 && std::isalpha(static_cast<unsigned char>(q[at - 1]))) continue;  // "piano " is not "no "
      std::string after = q.substr(at + n.size(), 40);
      const size_t stop = std::min({after.find(','), after.find(';'), after.find('.'), after.find('?'), after.find(" and "), after.find(" but "), after.find(" with ")});
      if (stop != std::string::npos) after = after.substr(0, stop);
      const std::vector<std::string> words = canonical_words(after);
      for (size_t i = 0; i < words.size() && i < 4; ++i)
        if (words[i] == what) return true;
    }
  }
  return false;
}

bool layernorm(Ctx& c) {
  const bool rms = c.words.count("rmsnorm") > 0;
  const bool ln = c.words.count("layernorm") || has(c.words, {"normalize", "normalized", "normalizing", "std", "variance", "mean"}) ||
                  (c.words.count("norm") && !c.words.count("batchnorm"));
  if (!(rms || ln) || c.words.count("batchnorm")) return false;
  std::vector<std::vector<double>> rows = rows_of(c.n);
  if (rows.empty())
    if (std::vector<double> v = one_vector(c.n); v.size() >= 2) rows = {v};
  if (rows.empty()) return false;
  for (const auto& r : rows) need_finite(r, "the vector");
  const double eps = named_or(c.n, "eps", 1e-5);
  json x = json::array();
  for (const auto& r : rows) x.push_back(as_json(r));
  json req = {{"x", x}, {"eps", eps}};
  const bool has_gamma = c.n.named.count("gamma"), has_beta = c.n.named.count("beta");
  const size_t d = rows[0].size();
  if (has_gamma) req["gamma"] = as_json(std::vector<double>(d, c.n.named.at("gamma")));
  if (has_beta && !rms) req["beta"] = as_json(std::vector<double>(d, c.n.named.at("beta")));
  std::vector<std::pair<std::string, std::string>> st;
  norm_state(st, rows, eps);
  if (has_gamma) st.emplace_back("gamma", shortest(c.n.named.at("gamma")));
  if (has_beta && !rms) st.emplace_back("beta", shortest(c.n.named.at("beta")));
  std::string text;
  if (rms) {
    const json r = server::compute_rmsnorm(req, c.limits);
    c.d.a.intent = "rmsnorm";
    st.emplace_back("norm", "rmsnorm");
    for (size_t i = 0; i < rows.size(); ++i) {
      const double rmsv = r["rms"][i].get<double>();
      const std::vector<double> out = json_vec(r["out"][i]);
      const std::string row = rows.size() > 1 ? " of row " + std::to_string(i) : "";
      c.d.add("rms" + row, rmsv, "rms = √(mean(x²) + ε), ε = " + shortest(eps));
      c.d.add("RMSNorm output" + row, as_json(out), "x / rms · γ");
      text += (text.empty() ? "" : " ") + std::string("For ") + say_list(rows[i]) + ": rms = " + say(rmsv) + ", so RMSNorm gives " +
              say_list(out) + ".";
    }
    text += " RMSNorm does not subtract the mean: it only rescales the vector to root-mean-square 1 (then γ).";
    c.d.cite("layernorm#rmsnorm", st);
  } else {
    const json r = server::compute_layernorm(req, c.limits);
    c.d.a.intent = "layernorm";
    for (size_t i = 0; i < rows.size(); ++i) {
      const double mean = r["mean"][i].get<double>(), var = r["var"][i].get<double>(), sd = r["std"][i].get<double>();
      const std::vector<double> out = json_vec(r["out"][i]);
      const std::string row = rows.size() > 1 ? " of row " + std::to_string(i) : "";
      c.d.add("mean μ" + row, mean, "μ = (1/d)·Σᵢ xᵢ, d = " + std::to_string(d));
      c.d.add("variance σ²" + row, var, "σ² = (1/d)·Σᵢ (xᵢ − μ)² (biased: divided by d)");
      c.d.add("standard deviation" + row, sd, "√(σ² + ε), ε = " + shortest(eps));
      c.d.add("LayerNorm output" + row, as_json(out), std::string("(xᵢ − μ)/√(σ² + ε)") + (has_gamma ? " · γ" : "") + (has_beta ? " + β" : ""));
      text += (text.empty() ? "" : " ") + std::string("For ") + say_list(rows[i]) + ": the mean is " + say(mean) +
              " and the standard deviation " + say(sd) + " (variance " + say(var) + ", ε = " + shortest(eps) +
              " inside the root), so LayerNorm gives " + say_list(out) + ".";
    }
    text += " Each value is centred by the mean and divided by the standard deviation; γ and β then scale and shift it.";
    c.d.cite("layernorm#step-by-step", st);
  }
  c.d.a.answer = text;
  return true;
}

bool batchnorm(Ctx& c) {
  if (!c.words.count("batchnorm")) return false;
  std::vector<std::vector<double>> rows = rows_of(c.n);
  if (rows.empty())
    if (std::vector<double> v = one_vector(c.n); v.size() >= 2)
      for (double x : v) rows.push_back({x});  // a batch of single numbers
  if (rows.size() < 2) return false;
  for (const auto& r : rows) need_finite(r, "the batch");
  const double eps = named_or(c.n, "eps", 1e-5);
  json x = json::array();
  for (const auto& r : rows) x.push_back(as_json(r));
  const json r = server::compute_batchnorm({{"x", x}, {"eps", eps}}, c.limits);
  c.d.a.intent = "batchnorm";
  const std::vector<double> mean = json_vec(r["mean"]), var = json_vec(r["var"]);
  std::vector<double> sd;
  for (double v : var) sd.push_back(std::sqrt(v + eps));
  c.d.add("per-feature mean", as_json(mean), "μⱼ = (1/B)·Σ_b x_bj over the batch's " + std::to_string(rows.size()) + " rows");
  c.d.add("per-feature variance", as_json(var), "σⱼ² = (1/B)·Σ_b (x_bj − μⱼ)²");
  c.d.add("per-feature standard deviation", as_json(sd), "√(σⱼ² + ε), ε = " + shortest(eps));
  c.d.a.answer = "BatchNorm normalises each feature (column) across the batch's " + std::to_string(rows.size()) +
                 " rows: per-feature mean " + say_list(mean) + " and standard deviation " + say_list(sd) +
                 ". Change one row and every row's output changes — that batch dependence is why Transformers use LayerNorm, which looks at one token at a time.";
  std::vector<std::pair<std::string, std::string>> st;
  c.d.cite("layernorm#batchnorm", st);
  return true;
}

bool activation(Ctx& c) {
  const bool relu = c.words.count("relu"), gelu = c.words.count("gelu");
  if (!relu && !gelu) return false;
  std::vector<double> v = one_vector(c.n);
  if (v.empty()) return false;
  need_finite(v, "the values");
  std::vector<std::pair<Activation, std::string>> acts;
  if (relu) acts.push_back({Activation::relu, "ReLU"});
  if (gelu) {
    std::string lower = c.q.text;
    for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    const bool tanh = (c.words.count("tanh") || c.words.count("approximate") || c.words.count("approx") || c.words.count("approximation")) &&
                      !negated(lower, "tanh") && lower.find("not tanh") == std::string::npos &&
                      lower.find("not the tanh") == std::string::npos && !c.words.count("erf");
    if (tanh) acts.push_back({Activation::gelu_tanh, "tanh-GELU"});
    else acts.push_back({Activation::gelu, "GELU"});
  }
  const std::map<Activation, std::string> formula = {{Activation::relu, "max(0, u)"},
                                                     {Activation::gelu, "½·u·(1 + erf(u/√2))"},
                                                     {Activation::gelu_tanh, "½·u·(1 + tanh(√(2/π)·(u + 0.044715·u³)))"}};
  std::string text;
  for (const auto& [act, name] : acts) {
    std::vector<float> in(v.begin(), v.end()), out(v.size());
    activation_forward<float>(act, out.data(), in.data(), int64_t(in.size()));
    std::vector<double> o(out.begin(), out.end());
    c.d.add(name + "(" + say_list(v, 4).substr(1, say_list(v, 4).size() - 2) + ")", as_json(o), name + "(u) = " + formula.at(act) + ", float32");
    text += (text.empty() ? "" : " ") + name + " of " + say_list(v) + " is " + say_list(o) + ".";
  }
  text += relu ? " ReLU keeps positive values and sets negative ones to exactly 0." : "";
  text += gelu ? " GELU weighs each value by the probability that a standard normal is below it: large positive values pass almost unchanged, negative ones are squashed towards 0 (not exactly 0)." : "";
  c.d.a.intent = "activation";
  c.d.a.answer = text;
  std::vector<std::pair<std::string, std::string>> st;
  if (acts.size() == 1) st.emplace_back("act", acts[0].first == Activation::relu ? "relu" : acts[0].first == Activation::gelu ? "gelu" : "gelu_tanh");
  c.d.cite("ffn#activation", st);
  return true;
}

bool ffn_size(Ctx& c) {
  const bool params = has(c.words, {"parameters", "parameter", "param", "weights", "weight", "count", "size", "memory"});
  const bool flop = has(c.words, {"flop", "flops", "compute", "cost", "operations", "multiply", "macs", "mac", "multiplications"});
  if (!(params || flop) || !(c.words.count("ffn") || c.n.named.count("dff"))) return false;
  double dm = named_or(c.n, "dmodel", NAN), dff = named_or(c.n, "dff", NAN);
  std::vector<double> loose = c.n.loose;
  if (!c.n.lists.empty()) loose.insert(loose.end(), c.n.lists[0].begin(), c.n.lists[0].end());
  for (double x : loose) {
    if (std::isnan(dm)) dm = x;
    else if (std::isnan(dff)) dff = x;
  }
  if (std::isnan(dm)) return false;
  bool assumed = false;
  if (std::isnan(dff)) dff = 4 * dm, assumed = true;
  for (double x : {dm, dff})
    if (x < 1 || x > 1e7 || x != std::floor(x))
      throw ApiError(400, "bad_request", "question: d_model and d_ff: expected whole numbers from 1 to 10^7, got " + say(x), "question");
  const bool bias = !has(c.words, {"bias", "biases"}) || !(c.q.text.find("without") != std::string::npos || c.q.text.find("no bias") != std::string::npos);
  const double tokens = named_or(c.n, "tokens", 1);
  const double w = 2 * dm * dff, p = w + (bias ? dff + dm : 0), f = 4 * dm * dff * tokens;
  c.d.a.intent = "ffn_size";
  std::string text = "An FFN with d_model = " + shortest(dm) + " and d_ff = " + shortest(dff) + (assumed ? " (4 × d_model, the usual choice; give d_ff to change it)" : "") + " has ";
  c.d.add("FFN parameters", p, bias ? "W₁ (d_ff·d_model) + b₁ (d_ff) + W₂ (d_model·d_ff) + b₂ (d_model) = 2·d·d_ff + d_ff + d" : "W₁ + W₂ = 2·d·d_ff (no biases)");
  text += shortest(p) + " parameters" + (bias ? " (" + shortest(w) + " weights and " + shortest(dff + dm) + " biases)" : " (weights only)");
  c.d.add(tokens == 1 ? "forward FLOPs per token" : "forward FLOPs for " + shortest(tokens) + " tokens", f,
          "2 matrix products of d·d_ff multiply-adds each, 2 FLOPs per multiply-add: 4·d·d_ff" + std::string(tokens == 1 ? "" : "·T"));
  text += ", and a forward pass costs " + shortest(f) + " FLOPs " + (tokens == 1 ? "per token" : "for " + shortest(tokens) + " tokens") +
          " (two matrix products; the activation's few operations per unit are not counted). A backward pass costs about twice the forward.";
  c.d.a.answer = text;
  std::vector<std::pair<std::string, std::string>> st;
  c.d.cite("ffn#expand-contract", st);
  return true;
}

bool residual(Ctx& c) {
  if (!c.n.named_lists.count("delta")) return false;
  if (!(c.words.count("residual") || c.n.named_lists.count("x"))) return false;
  std::vector<double> x = c.n.named_lists.count("x") ? c.n.named_lists.at("x") : c.n.lists.empty() ? std::vector<double>{} : c.n.lists[0];
  const std::vector<double> f = c.n.named_lists.at("delta");
  if (x.empty() || x.size() != f.size())
    throw ApiError(400, "bad_request", "question: x and Δ: expected two lists of the same length, got " + std::to_string(x.size()) + " and " + std::to_string(f.size()), "question");
  need_finite(x, "x");
  need_finite(f, "Δ");
  const double alpha = named_or(c.n, "alpha", 1);
  const json r = server::compute_residual({{"x", json::array({as_json(x)})}, {"f", json::array({as_json(f)})}, {"alpha", alpha}}, *c.models, c.limits);
  const std::vector<double> out = json_vec(r["out"][0]);
  const json& nm = r["norms"][0];
  c.d.a.intent = "residual";
  c.d.add("x + αΔ", as_json(out), "outᵢ = xᵢ + α·Δᵢ, α = " + shortest(alpha));
  c.d.add("‖x‖", nm["x"], "√(Σ xᵢ²)");
  c.d.add("‖out‖", nm["out"], "√(Σ outᵢ²)");
  c.d.a.answer = "x + αΔ with x = " + say_list(x) + ", Δ = " + say_list(f) + " and α = " + say(alpha) + " is " + say_list(out) +
                 ": the sub-layer's output is added to x, feature by feature — x is not replaced. ‖x‖ = " + say(nm["x"].get<double>()) +
                 ", ‖out‖ = " + say(nm["out"].get<double>()) + ".";
  std::vector<std::pair<std::string, std::string>> st = {{"comp", "residual"}};
  if (alpha != 1 && alpha >= 0 && alpha <= 2) st.emplace_back("alpha", shortest(alpha));
  c.d.cite("other-half#residual", st);
  return true;
}

struct FlowSetup {
  int64_t layers = 24;
  bool residual = true;
  std::string norm = "layernorm", placement = "pre";
};

json run_gradflow(const FlowSetup& s, const server::Limits& L) {
  return server::compute_gradient_flow({{"n_layers", s.layers}, {"residual", s.residual}, {"norm", s.norm}, {"placement", s.placement}}, L);
}

std::vector<std::pair<std::string, std::string>> flow_state(const FlowSetup& s) {
  std::vector<std::pair<std::string, std::string>> st;
  if (s.layers != 24) st.emplace_back("layers", std::to_string(s.layers));
  if (!s.residual) st.emplace_back("residual", "0");
  if (s.norm != "layernorm") st.emplace_back("norm", s.norm);
  if (s.placement != "pre") st.emplace_back("placement", s.placement);
  return st;
}

std::string setup_words(const FlowSetup& s) {
  return std::to_string(s.layers) + " layers, " + (s.residual ? "with" : "without") + " residuals, " +
         (s.norm == "none" ? "no norm" : s.norm) + (s.norm == "none" ? "" : ", " + s.placement + "-norm");
}


// A depth the question gives: a whole number of layers in 1..100 (the gradient-flow page's range), checked as
// written (a double: 1e300 or 2.5 are refused as they are, not cast).
int64_t depth_from(double layers, const std::string& range_note) {
  if (!(layers >= 1 && layers <= 100 && layers == std::floor(layers))) {
    char got[40];
    std::snprintf(got, sizeof got, "%.6g", layers);
    throw ApiError(400, "bad_request", "question: depth: expected 1 to 100 layers" + range_note + ", got " + got, "question");
  }
  return int64_t(layers);
}

FlowSetup setup_from(const Ctx& c) {
  FlowSetup s;
  std::string lower = c.q.text;
  for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  s.layers = depth_from(named_or(c.n, "layers", c.n.loose.empty() ? 24 : c.n.loose[0]), " (the gradient-flow page's range)");
  if (negated(lower, "residual")) s.residual = false;
  if (negated(lower, "layernorm") || negated(lower, "norm") || negated(lower, "normalization")) s.norm = "none";
  if (c.words.count("rmsnorm") && s.norm != "none") s.norm = "rmsnorm";
  if (c.words.count("postnorm")) s.placement = "post";
  return s;
}

bool gradient_flow(Ctx& c, double* ms) {
  const bool grad = c.words.count("gradient") > 0;
  const bool depth_given = c.n.named.count("layers") > 0;
  const bool drift = has(c.words, {"drift", "drifts", "drifting"}) ||
                     (has(c.words, {"activation", "activations", "std", "stream", "spread", "scale"}) && !grad);
  if (!((grad || drift) && depth_given)) return false;
  const FlowSetup s = setup_from(c);
  const auto t0 = std::chrono::steady_clock::now();
  const json r = run_gradflow(s, c.limits);
  *ms = ms_since(t0);
  const json& L = r["layers"];
  const int64_t n = int64_t(L.size());
  const int64_t k = int64_t(std::clamp<double>(named_or(c.n, "layer", 0), 0, double(n - 1)));  // clamped before the cast
  const double first = L[0]["grad_norm_resid"].get<double>(), last = L[size_t(n - 1)]["grad_norm_resid"].get<double>();
  const double at_k = L[size_t(k)]["grad_norm_resid"].get<double>();
  const std::string setup = setup_words(s) + " (at initialisation, seed 0, batch 4 × 20 tokens; measured now, " + say(*ms) + " ms)";
  if (drift && !grad) {
    c.d.a.intent = "drift";
    const double s0 = L[0]["act_std"].get<double>(), sn = L[size_t(n - 1)]["act_std"].get<double>();
    c.d.add("std of blocks.0.hook_resid_post", s0, "standard deviation over every element of the block's output");
    c.d.add("std of blocks." + std::to_string(n - 1) + ".hook_resid_post", sn, "the same at the last block");
    c.d.a.answer = "With " + setup + ": the residual stream's standard deviation is " + say(s0) + " after block 0 and " + say(sn) +
                   " after block " + std::to_string(n - 1) + " (" + say(sn / s0) + "×). " +
                   (s.residual ? "Every block adds its increment to the stream and nothing scales it back down, so its spread grows with depth; a norm inside the branch (pre-norm) keeps each increment's size in check, post-norm rescales the stream itself." :
                                 "Without residuals each block's output replaces its input.");
  } else {
    c.d.a.intent = "gradient_flow";
    c.d.add("‖∂L/∂x‖ at layer " + std::to_string(k), at_k, "L2 norm of the loss's gradient with respect to blocks." + std::to_string(k) + ".hook_resid_pre");
    if (k != 0) c.d.add("‖∂L/∂x‖ at layer 0", first, "the same at the first block's input");
    c.d.add("‖∂L/∂x‖ at layer " + std::to_string(n - 1), last, "the same at the last block's input");
    c.d.add("ratio layer 0 / layer " + std::to_string(n - 1), first / last, "how much the gradient grew (>1) or shrank (<1) on its way down");
    c.d.a.answer = "With " + setup + ": the gradient norm reaching layer " + std::to_string(k) + " is " + say(at_k) +
                   (k != 0 ? "; at layer 0 it is " + say(first) : std::string()) + ", and at the last layer " + say(last) + " (" +
                   say(first / last) + "× from the last layer to the first). " +
                   (s.residual ? "The identity path of each residual (I + ∂f/∂x) carries the gradient down almost unchanged."
                               : "Without residuals the gradient is a product of every layer's Jacobian, so it shrinks or grows geometrically with depth.");
  }
  c.d.cite(drift && !grad ? "gradflow#drift" : s.residual ? "gradflow#highway" : "gradflow#vanishing", flow_state(s));
  c.d.cite("gradflow#depth", flow_state(s));
  return true;
}

bool no_norm(Ctx& c, double* ms) {
  std::string lower = c.q.text;
  for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  if (!(negated(lower, "layernorm") || negated(lower, "norm") || negated(lower, "normalization"))) return false;
  if (!has(c.words, {"happen", "happens", "unstable", "instability", "stable", "train", "training", "break", "fail", "need", "why", "what", "remove", "without"}) &&
      c.q.text.find('?') == std::string::npos)
    return false;
  FlowSetup with, without;
  with.layers = without.layers = depth_from(named_or(c.n, "layers", 24), "");
  without.norm = "none";
  const auto t0 = std::chrono::steady_clock::now();
  const json a = run_gradflow(with, c.limits), b = run_gradflow(without, c.limits);
  *ms = ms_since(t0);
  const size_t n = a["layers"].size();
  const double sa = a["layers"][n - 1]["act_std"].get<double>(), sb = b["layers"][n - 1]["act_std"].get<double>();
  const double ga = a["layers"][0]["grad_norm_resid"].get<double>(), gb = b["layers"][0]["grad_norm_resid"].get<double>();
  c.d.a.intent = "no_norm";
  c.d.add("std of the last block's output, LayerNorm", sa, "blocks." + std::to_string(n - 1) + ".hook_resid_post, pre-norm with residuals");
  c.d.add("std of the last block's output, no norm", sb, "the same model without any norm");
  c.d.add("‖∂L/∂x‖ at layer 0, LayerNorm", ga, "gradient norm at the first block's input");
  c.d.add("‖∂L/∂x‖ at layer 0, no norm", gb, "the same without any norm");
  c.d.a.answer = "A short measurement, run now (" + std::to_string(with.layers) + " layers with residuals, at initialisation, seed 0; " + say(*ms) +
                 " ms): without a norm the last block's output has standard deviation " + say(sb) + " against " + say(sa) +
                 " with LayerNorm, and the gradient at layer 0 is " + say(gb) + " against " + say(ga) +
                 ". Without the norm nothing keeps each sub-layer's input at a fixed scale, so activations and gradients drift with depth and learning rate. "
                 "Whether training actually fails depends on depth, learning rate and steps: at small depth and a gentle learning rate a model without a norm can still learn — compare both on the Train page.";
  c.d.cite("train#no-norm", {{"preset", "layernorm"}});
  c.d.cite("gradflow#drift", {{"norm", "none"}, {"layers", std::to_string(with.layers)}});
  c.d.cite("layernorm#why");
  return true;
}

// ---- the page the learner is on ---------------------------------------------------------------------

bool deictic(const std::set<std::string>& w, const std::string& q) {
  std::string lower = q;
  for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  for (const char* cue : {"this", "these", "here", "now", "current", "my ", "the bar", "the chart", "the plot", "the graph", "the curve",
                          "the line", "the heatmap", "the numbers", "the values", "why did", "what happened", "shrink", "grew", "grow",
                          "went", "the widget", "i see", "i'm seeing", "on screen", "shown", "showing", "bigger", "smaller", "taller", "shorter",
                          "the output", "broken", "same as", "look", "stuck", "run a", "run b", "i changed", "i moved", "i set", "i clicked", "did i"})
    if (lower.find(cue) != std::string::npos) return true;
  (void)w;
  return false;
}

// The page state's choices as words: {"placement": "post", "act": "relu", "residual": false} ->
// "post-norm relu without residual".
std::string context_words(const json& ctx) {
  std::string out;
  for (auto it = ctx.begin(); it != ctx.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (k.ends_with("place") || k == "placement") {
      if (v.is_string()) out += " " + v.get<std::string>() + "-norm";
    } else if (k.ends_with("norm") || k == "act" || k.ends_with("_act") || k == "preset" || k == "comp" || k == "tab") {
      if (v.is_string()) out += v == "none" ? " no norm" : " " + v.get<std::string>();
    } else if (k.ends_with("res") || k == "residual") {
      if (v.is_boolean() && !v.get<bool>()) out += " without residual";
    } else if (k.ends_with("warm")) {
      if (v.is_number() && v.get<double>() > 0) out += " warmup";
    }
  }
  return out;
}

std::string ctx_str(const json& ctx, const char* key, const std::string& fallback, size_t max_len) {
  const json* v = server::optional_field(ctx, key);
  if (!v || v->is_null()) return fallback;
  if (!v->is_string()) throw ApiError(400, "bad_request", std::string("context.") + key + ": expected a string", std::string("context.") + key);
  std::string s = v->get<std::string>();
  if (s.size() > max_len) throw ApiError(400, "bad_request", std::string("context.") + key + ": expected at most " + std::to_string(max_len) + " bytes", std::string("context.") + key);
  return s;
}

// The block on the page's sentence (context.text), tracking context.pos: a position past the sentence's end is
// its last token, as the pages read it (never a refusal of a "track" the reader did not send); a refusal of the
// sentence names the context's field ("context.text[1]: expected a character of the model's alphabet, got \"é\"").
json block_of_context(Ctx& c, const std::string& text, int64_t pos_in) {
  const int64_t n_chars = int64_t(server::utf8_length(text));
  const json track = pos_in < 0 || pos_in >= n_chars ? json(nullptr) : json(pos_in);
  try {
    return server::compute_block({{"model", "chars-small"}, {"text", text}, {"track", track}, {"trace", false}, {"top_k", 1}}, *c.models, c.limits);
  } catch (const ApiError& e) {
    if (e.field.rfind("text", 0) != 0) throw;
    throw ApiError(e.status, e.code, std::string("context.") + e.what(), "context." + e.field);
  }
}

bool page_ffn(Ctx& c, double* ms) {
  if (!c.models) return false;
  const json& x = c.q.context;
  const std::string text = ctx_str(x, "text", "Four score and seven", 256);
  if (text.empty()) return false;
  const int64_t pos_in = server::read_integer(x, "pos", -1, -1, 511, "context");
  const int64_t layer = server::read_integer(x, "layer", 0, 0, 127, "context");
  const std::string act = server::read_choice(x, "act", "gelu_tanh", {"relu", "gelu", "gelu_tanh"}, "context");
  const auto t0 = std::chrono::steady_clock::now();
  json block = block_of_context(c, text, pos_in);
  const int64_t track = block["track"].get<int64_t>();
  const json* step = nullptr;
  int64_t n_layers = 0;
  for (const json& s : block["tracker"]) {
    n_layers = std::max<int64_t>(n_layers, s["block"].get<int64_t>() + 1);
    if (s["component"] == "ffn" && s["block"].get<int64_t>() == layer) step = &s;
  }
  if (!step) {
    for (const json& s : block["tracker"])
      if (s["component"] == "ffn" && s["block"].get<int64_t>() == n_layers - 1) step = &s;
  }
  if (!step) return false;
  const int64_t L = (*step)["block"].get<int64_t>();
  json f = server::compute_ffn({{"x", json::array({(*step)["before"]})}, {"model", "chars-small"}, {"layer", L}, {"activation", act}, {"top_k", 3}}, *c.models, c.limits);
  *ms = ms_since(t0);
  const std::vector<double> pre = json_vec(f["pre"][0]), a = json_vec(f["act"][0]), out = json_vec(f["out"][0]);
  const double frac = f["top_units"][0]["active_fraction"].get<double>();
  const int64_t dff = int64_t(pre.size());
  int64_t negative = 0;
  for (double v : pre) negative += v < 0;
  const std::string name = act == "relu" ? "ReLU" : act == "gelu" ? "GELU" : "tanh-GELU";
  c.d.add("‖pre‖ (x·W₁ᵀ + b₁)", norm2(pre), "L2 norm of the " + std::to_string(dff) + " pre-activations");
  c.d.add("‖act‖ (after " + name + ")", norm2(a), "L2 norm after the activation");
  c.d.add("active units", frac, "fraction of the " + std::to_string(dff) + " hidden units with " + name + "(pre) > 0");
  c.d.add("negative pre-activations", double(negative), "units with pre < 0");
  c.d.add("‖out‖ (act·W₂ᵀ + b₂)", norm2(out), "L2 norm of the FFN's output, back in d_model");
  std::string ch;
  {
    // the tracked character, for the sentence (text is UTF-8: take the track-th code point)
    int64_t cp = 0;
    for (size_t i = 0; i < text.size(); i += server::utf8_char_bytes(text, i), ++cp)
      if (cp == track) {
        ch = text.substr(i, server::utf8_char_bytes(text, i));
        break;
      }
  }
  c.d.a.intent = "page_state";
  c.d.a.answer = "On the page now (layer " + std::to_string(L) + ", position " + std::to_string(track) + " “" + ch + "”, " + name + "): " +
                 std::to_string(negative) + " of the " + std::to_string(dff) + " pre-activations are negative, and " + name +
                 (act == "relu" ? " sets every one of them to exactly 0" : " squashes them towards 0") + ", so only " + say(100 * frac) +
                 "% of the units stay active: ‖act‖ = " + say(norm2(a)) + " against ‖pre‖ = " + say(norm2(pre)) +
                 ". That is why the bars after the activation are shorter, and the left-hand (negative) ones nearly vanish. W₂ then mixes the surviving units back into d_model (‖out‖ = " +
                 say(norm2(out)) + ").";
  std::vector<std::pair<std::string, std::string>> st = {{"text", url_value(text)}, {"act", act}};
  if (pos_in >= 0) st.emplace_back("pos", std::to_string(pos_in));
  if (L != 0) st.emplace_back("layer", std::to_string(L));
  c.d.cite("ffn#activation", st);
  return true;
}

bool page_layernorm(Ctx& c) {
  const json& x = c.q.context;
  if (!server::optional_field(x, "x")) return false;
  const server::Matrix m = server::read_matrix(x, "x", 8, 8, "context");
  const int64_t row = std::min<int64_t>(server::read_integer(x, "row", 0, 0, 7, "context"), m.rows - 1);
  const bool rms = server::read_choice(x, "norm", "layernorm", {"layernorm", "rmsnorm"}, "context") == "rmsnorm";
  const double eps = server::read_number(x, "eps", 1e-5, 1e-12, 1, "context");
  std::vector<double> r(m.data.begin() + row * m.cols, m.data.begin() + (row + 1) * m.cols);
  const json req = {{"x", json::array({as_json(r)})}, {"eps", eps}};
  c.d.a.intent = "page_state";
  std::vector<std::vector<double>> rows;
  for (int64_t i = 0; i < m.rows; ++i) rows.emplace_back(m.data.begin() + i * m.cols, m.data.begin() + (i + 1) * m.cols);
  std::vector<std::pair<std::string, std::string>> st;
  norm_state(st, rows, eps);
  if (row) st.emplace_back("row", std::to_string(row));
  if (rms) {
    const json o = server::compute_rmsnorm(req, c.limits);
    const double v = o["rms"][0].get<double>();
    c.d.add("rms of row " + std::to_string(row), v, "√(mean(x²) + ε)");
    c.d.a.answer = "Row " + std::to_string(row) + " on the page, " + say_list(r) + ", has rms " + say(v) + ": RMSNorm divides every value by it, so the output's root-mean-square is 1 (before γ). It does not subtract the mean, so the values keep their offset.";
    st.emplace_back("norm", "rmsnorm");
    c.d.cite("layernorm#rmsnorm", st);
  } else {
    const json o = server::compute_layernorm(req, c.limits);
    const double mean = o["mean"][0].get<double>(), sd = o["std"][0].get<double>();
    c.d.add("mean μ of row " + std::to_string(row), mean, "(1/d)·Σ xᵢ");
    c.d.add("standard deviation of row " + std::to_string(row), sd, "√(σ² + ε)");
    c.d.add("LayerNorm output of row " + std::to_string(row), o["normalized"][0], "(xᵢ − μ)/√(σ² + ε), before γ and β");
    c.d.a.answer = "Row " + std::to_string(row) + " on the page, " + say_list(r) + ", has mean " + say(mean) + " and standard deviation " + say(sd) +
                   ": subtracting the mean centres it at 0, dividing by the standard deviation gives it spread 1 — " +
                   say_list(json_vec(o["normalized"][0])) + " — whatever its original scale; γ and β then set the scale and offset the model learned.";
    c.d.cite("layernorm#step-by-step", st);
  }
  return true;
}

bool page_gradflow(Ctx& c, double* ms) {
  const json& x = c.q.context;
  FlowSetup s;
  s.layers = server::read_integer(x, "layers", 24, 1, 100, "context");
  s.residual = server::read_bool(x, "residual", true, "context");
  s.norm = server::read_choice(x, "norm", "layernorm", {"layernorm", "rmsnorm", "none"}, "context");
  s.placement = server::read_choice(x, "placement", "pre", {"pre", "post"}, "context");
  const auto t0 = std::chrono::steady_clock::now();
  const json r = run_gradflow(s, c.limits);
  *ms = ms_since(t0);
  const json& L = r["layers"];
  const size_t n = L.size();
  const double first = L[0]["grad_norm_resid"].get<double>(), last = L[n - 1]["grad_norm_resid"].get<double>();
  c.d.a.intent = "page_state";
  c.d.add("‖∂L/∂x‖ at layer 0", first, "gradient norm at blocks.0.hook_resid_pre");
  c.d.add("‖∂L/∂x‖ at layer " + std::to_string(n - 1), last, "gradient norm at the last block's input");
  c.d.add("ratio layer 0 / last", first / last, "<1: the gradient shrank on its way down; >1: it grew");
  c.d.a.answer = "On the page now (" + setup_words(s) + "): the gradient norm is " + say(last) + " at the last layer and " + say(first) +
                 " at layer 0, a factor " + say(first / last) + ". " +
                 (s.residual ? "With residuals each block's Jacobian is I + ∂f/∂x, so the gradient keeps an identity path back to the first layers."
                             : "Without residuals the gradient at layer 0 is a product of " + std::to_string(n) + " Jacobians: each one that shrinks (or stretches) it compounds, so the bars fall (or rise) geometrically with depth.");
  c.d.cite(s.residual ? "gradflow#highway" : "gradflow#vanishing", flow_state(s));
  return true;
}

bool page_other_half(Ctx& c, double* ms) {
  if (!c.models) return false;
  const json& x = c.q.context;
  const std::string comp = server::read_choice(x, "comp", "residual", {"residual", "layernorm", "ffn"}, "context");
  if (comp != "residual") return false;
  const std::string text = ctx_str(x, "text", "Four score and seven", 256);
  if (text.empty()) return false;
  const int64_t pos_in = server::read_integer(x, "pos", -1, -1, 511, "context");
  const int64_t blk = server::read_integer(x, "block", 0, 0, 127, "context");
  const std::string sub = server::read_choice(x, "sub", "attn", {"attn", "ffn"}, "context");
  const double alpha = server::read_number(x, "alpha", 1, 0, 2, "context");
  const auto t0 = std::chrono::steady_clock::now();
  json block = block_of_context(c, text, pos_in);
  const json* step = nullptr;
  for (const json& s : block["tracker"])
    if (s["block"].get<int64_t>() == blk && s["component"] == (sub == "attn" ? "attention" : "ffn")) step = &s;
  if (!step) return false;
  const std::vector<double> xin = json_vec((*step)["before"]);
  const json sublayer = {{"model", "chars-small"}, {"layer", blk}, {"kind", sub == "attn" ? "attention" : "ffn"}};
  json r;
  try {
    r = server::compute_residual({{"x", json::array({as_json(xin)})}, {"sublayer", sublayer}, {"alpha", alpha}}, *c.models, c.limits);
  } catch (const ApiError&) {
    return false;
  }
  *ms = ms_since(t0);
  const json& nm = r["norms"][0];
  c.d.a.intent = "page_state";
  c.d.add("‖x‖", nm["x"], "norm of the residual stream entering the sub-layer");
  c.d.add("‖Δ‖", nm["f"], "norm of the sub-layer's output f(x)");
  c.d.add("‖x + αΔ‖", nm["out"], "norm after the addition, α = " + shortest(alpha));
  if (!nm["cos_x_out"].is_null()) c.d.add("cos(x, out)", nm["cos_x_out"], "x·out / (‖x‖‖out‖): 1 = same direction");
  c.d.a.answer = "On the page now (block " + std::to_string(blk) + ", the " + (sub == "attn" ? "attention" : "FFN") + " sub-layer, α = " + say(alpha) +
                 "): ‖x‖ = " + say(nm["x"].get<double>()) + ", the increment ‖Δ‖ = " + say(nm["f"].get<double>()) + ", and ‖x + αΔ‖ = " +
                 say(nm["out"].get<double>()) + (nm["cos_x_out"].is_null() ? "" : " with cos(x, out) = " + say(nm["cos_x_out"].get<double>())) +
                 ". The output is x plus a correction: x is kept, feature by feature, and the sub-layer only adds to it." +
                 (alpha == 0 ? " With α = 0 the increment is multiplied by 0, so the output is exactly x: nothing is broken, the sub-layer is switched off." : "");
  std::vector<std::pair<std::string, std::string>> st = {{"comp", "residual"}, {"text", url_value(text)}};
  if (pos_in >= 0) st.emplace_back("pos", std::to_string(pos_in));
  if (blk) st.emplace_back("block", std::to_string(blk));
  if (sub != "attn") st.emplace_back("sub", sub);
  if (alpha != 1) st.emplace_back("alpha", shortest(alpha));
  c.d.cite("other-half#residual", st);
  return true;
}

}  // namespace

Answer Assistant::ask(const Question& q) const {
  const auto t0 = std::chrono::steady_clock::now();
  if (!q.page.empty() && !index_->page(q.page)) {
    std::string known;
    for (const LessonPage& p : index_->pages()) known += (known.empty() ? "" : ", ") + p.page;
    throw ApiError(400, "bad_request", "page: expected one of " + known + ", got \"" + q.page.substr(0, 40) + "\"", "page");
  }
  Draft d{Answer{}, index_.get()};
  const Numbers n = extract_numbers(q.text);
  std::set<std::string> words;
  for (const std::string& w : canonical_words(q.text)) words.insert(w);
  const Query query = index_->analyse(q.text);
  Ctx c{q, n, words, models_, limits_, d};
  double run_ms = -1;

  bool done = residual(c) || batchnorm(c) || layernorm(c) || activation(c) || ffn_size(c) || gradient_flow(c, &run_ms) || no_norm(c, &run_ms);
  // On a page, the state it shows says what "this" is; its enum values join the question's words for the search.
  Query query_in_page = query;
  const bool about_page = !q.page.empty() && q.context.is_object() && deictic(words, q.text);
  if (about_page) query_in_page = index_->analyse(q.text + " " + context_words(q.context));
  if (!done && about_page) {
    if (q.page == "ffn") done = page_ffn(c, &run_ms);
    else if (q.page == "layernorm") done = page_layernorm(c);
    else if (q.page == "gradflow") done = page_gradflow(c, &run_ms);
    else if (q.page == "other-half") done = page_other_half(c, &run_ms);
  }
  if (done) {
    // Then the lessons the question's words point to, as further reading.
    for (const Hit& h : index_->search(query, q.page, 2)) d.cite(h.section->key());
    if (d.a.citations.size() > 3) d.a.citations.resize(3);
  } else {
    // A question about the page ("why is the norm after the add now") is answered from that page's
    // sections, with the page's state among its words; any other needs its words known to the lessons.
    const std::vector<Hit> hits = about_page && query.coverage >= 0.25 ? index_->search_page(query_in_page, q.page, 3) : index_->search(query, q.page, 3);
    // Answerable: most of the question's weight is in the lessons, and the best section has a good share of
    // it (a question whose known words are scattered over unrelated sections is not about them).
    const bool answerable = !hits.empty() && hits[0].score > 0 &&
                            ((about_page && query.coverage >= 0.25) || (query.informative && query.coverage >= 0.5 && hits[0].support >= 0.35));
    if (answerable) {
      d.a.intent = "lessons";
      d.a.answer = summary_of(*hits[0].section, about_page ? query_in_page : query, wants_formula(words));
      d.cite(hits[0].section->key());
      for (size_t i = 1; i < hits.size(); ++i)
        if (hits[i].score >= 0.5 * hits[0].score) d.cite(hits[i].section->key());
    } else {
      d.a.status = "unknown";
      d.a.intent = "unknown";
      std::vector<Hit> near = hits;
      if (near.empty() && !q.page.empty()) near = index_->search_page(query, q.page, 3);
      std::string list;
      for (const Hit& h : near) {
        d.cite(h.section->key());
        list += (list.empty() ? "" : "; ") + h.section->title;
      }
      d.a.answer = "I don't know: the lessons do not cover that, and it is not something I can compute with the engine. "
                   "I answer questions about the residual connection, LayerNorm and RMSNorm, the feed-forward network, "
                   "norm placement, gradient flow and training in this course" +
                   std::string(list.empty() ? "." : ". The closest sections: " + list + ".");
    }
  }
  d.a.computation_ms = run_ms;
  d.a.elapsed_ms = ms_since(t0);
  return d.a;
}

}  // namespace blocklab::assistant
