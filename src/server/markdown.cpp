// The comment renderer (markdown.h). Three steps, none recursive:
//   1. sanitize: UTF-8 repaired, controls dropped, line endings normalised;
//   2. blocks: lines grouped into paragraphs and fenced code blocks;
//   3. inline, per paragraph: one left-to-right scan into tokens (code spans, delimiter runs, links,
//      bare URLs, text), then CommonMark's delimiter-stack matching of * and _ (each link's text is its
//      own context, so tags always nest), then the tokens written out with a depth cap on emphasis.
// Every step is linear (code spans: a binary search per backtick run), so no input is slow.
#include "server/markdown.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

namespace blocklab::server {
namespace {

void append_escaped(std::string& out, std::string_view s) {
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += ch;
    }
  }
}

// Step 1. Invalid UTF-8 becomes U+FFFD per offending byte.
std::string sanitize(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  const size_t n = in.size();
  size_t i = 0;
  auto byte = [&](size_t k) { return static_cast<unsigned char>(in[k]); };
  while (i < n) {
    const unsigned char b = byte(i);
    if (b < 0x80) {
      if (b == '\r') {
        out += '\n';
        i += (i + 1 < n && in[i + 1] == '\n') ? 2 : 1;
        continue;
      }
      if (b == '\n' || b == '\t' || (b >= 0x20 && b != 0x7f)) out += static_cast<char>(b);
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;  // no surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
    }
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      const unsigned char c = byte(i + k);
      ok = k == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
    }
    if (ok) {
      out.append(in.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n'; }
bool is_ascii_alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_ascii_punct(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u >= 0x21 && u <= 0x2F) || (u >= 0x3A && u <= 0x40) || (u >= 0x5B && u <= 0x60) ||
         (u >= 0x7B && u <= 0x7E);
}
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t k = 0; k < prefix.size(); ++k)
    if (lower(s[k]) != prefix[k]) return false;
  return true;
}

// The characters a linked URL may consist of (RFC 3986's unreserved and reserved, and '%', less the
// quote, the brackets and everything that would need escaping in an attribute but '&').
bool is_url_char(char c) {
  if (is_ascii_alnum(c)) return true;
  switch (c) {
    case '-': case '.': case '_': case '~': case ':': case '/': case '?': case '#': case '@':
    case '!': case '$': case '&': case '(': case ')': case '*': case '+': case ',': case ';':
    case '=': case '%':
      return true;
    default:
      return false;
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// What a browser would see of the URL's scheme: character references decoded (numeric, and the
// few named ones that spell URL punctuation), then percent-escapes, then whitespace and controls
// removed, lower-cased. Non-ASCII results become 0x80 (they cannot spell anything we look for).
std::string normalize_url(std::string_view u) {
  static const std::pair<std::string_view, char> kNamed[] = {
      {"colon", ':'}, {"tab", '\t'}, {"newline", '\n'}, {"sol", '/'},  {"lpar", '('},
      {"rpar", ')'},  {"period", '.'}, {"comma", ','}, {"num", '#'},  {"amp", '&'},
      {"lt", '<'},    {"gt", '>'},   {"quot", '"'},    {"apos", '\''}, {"percnt", '%'}};
  std::string ent;
  for (size_t i = 0; i < u.size();) {
    if (u[i] == '&' && i + 1 < u.size() && u[i + 1] == '#') {
      size_t k = i + 2;
      const bool hex = k < u.size() && lower(u[k]) == 'x';
      if (hex) ++k;
      uint32_t cp = 0;
      const size_t digits_from = k;
      while (k < u.size() && (hex ? hex_value(u[k]) >= 0 : (u[k] >= '0' && u[k] <= '9'))) {
        cp = std::min<uint32_t>(cp * (hex ? 16 : 10) + static_cast<uint32_t>(hex_value(u[k])), 0x110000);
        ++k;
      }
      if (k > digits_from) {
        if (k < u.size() && u[k] == ';') ++k;
        ent += cp < 0x80 ? static_cast<char>(cp) : '\x80';
        i = k;
        continue;
      }
    } else if (u[i] == '&') {
      bool matched = false;
      for (const auto& [name, ch] : kNamed) {
        if (starts_with_ci(u.substr(i + 1), name)) {
          size_t k = i + 1 + name.size();
          if (k < u.size() && u[k] == ';') ++k;
          ent += ch;
          i = k;
          matched = true;
          break;
        }
      }
      if (matched) continue;
    }
    ent += u[i++];
  }
  std::string out;
  for (size_t i = 0; i < ent.size();) {
    char c = ent[i];
    if (c == '%' && i + 2 < ent.size() && hex_value(ent[i + 1]) >= 0 && hex_value(ent[i + 2]) >= 0) {
      c = static_cast<char>(hex_value(ent[i + 1]) * 16 + hex_value(ent[i + 2]));
      i += 3;
    } else {
      ++i;
    }
    const auto b = static_cast<unsigned char>(c);
    if (b <= 0x20 || b == 0x7f) continue;  // whitespace and controls
    out += b >= 0x80 ? '\x80' : lower(c);
  }
  return out;
}

// "on<letters>=" (an event-handler attribute) not preceded by a letter or digit.
bool has_handler_pattern(std::string_view s) {
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    if (s[i] != 'o' || s[i + 1] != 'n' || (i > 0 && is_ascii_alnum(s[i - 1]))) continue;
    size_t k = i + 2;
    while (k < s.size() && s[k] >= 'a' && s[k] <= 'z') ++k;
    if (k > i + 2 && k < s.size() && s[k] == '=') return true;
  }
  return false;
}

// Whether `u` (already made of is_url_char characters) may become an href.
bool url_ok(std::string_view u) {
  size_t host = 0;
  if (starts_with_ci(u, "http://")) host = 7;
  else if (starts_with_ci(u, "https://")) host = 8;
  else return false;
  if (u.size() <= host || !is_ascii_alnum(u[host])) return false;
  for (char c : u)
    if (!is_url_char(c)) return false;
  const std::string norm = normalize_url(u);
  if (norm.rfind("http://", 0) != 0 && norm.rfind("https://", 0) != 0) return false;
  // Both as written and as decoded: decoding can hide a pattern ("&#97;onclick=" reads "aonclick=").
  std::string raw(u);
  for (char& c : raw) c = lower(c);
  for (const std::string& form : {raw, norm}) {
    if (form.find("javascript:") != std::string::npos || form.find("vbscript:") != std::string::npos) return false;
    if (has_handler_pattern(form)) return false;
  }
  return true;
}

void append_href(std::string& out, std::string_view url) {
  out += "<a href=\"";
  const size_t colon = url.find(':');
  for (size_t k = 0; k < colon; ++k) out += lower(url[k]);  // the scheme, lower-cased
  append_escaped(out, url.substr(colon));
  out += "\" rel=\"nofollow noopener noreferrer\">";
}

enum class Kind : uint8_t { kText, kBracket, kCode, kDelim, kBreak, kLinkOpen, kLinkClose, kAuto };

struct Tok {
  Kind kind;
  uint32_t b = 0, e = 0;  // kText, kCode (content), kDelim (the run), kLinkOpen (the URL), kAuto
  char c = 0;             // kDelim: '*' or '_'
  bool can_open = false, can_close = false;
  int32_t remaining = 0;  // kDelim: characters not used by a match
  std::vector<int32_t> closes, opens;  // kDelim: pairs closed (in match order) and opened here
};

struct Pair {
  char c;
  uint8_t len;  // 1: em, 2: strong
};

class InlineRenderer {
 public:
  explicit InlineRenderer(std::string_view s) : s_(s) {}

  void render(std::string& out) {
    tokenize();
    match_emphasis();
    write(out);
  }

 private:
  void add_text(size_t b, size_t e) {
    if (!toks_.empty() && toks_.back().kind == Kind::kText && toks_.back().e == b) {
      toks_.back().e = static_cast<uint32_t>(e);
      return;
    }
    push(Kind::kText, b, e);
  }
  Tok& push(Kind k, size_t b, size_t e) {
    Tok t;
    t.kind = k;
    t.b = static_cast<uint32_t>(b);
    t.e = static_cast<uint32_t>(e);
    toks_.push_back(std::move(t));
    return toks_.back();
  }

  // The link destination after "](" at p: optional whitespace, URL characters with balanced
  // parentheses, optional whitespace, ')'. Stops at the first other character, so '[' or ']' end it.
  bool parse_dest(size_t p, size_t* ub, size_t* ue, size_t* end) const {
    const size_t n = s_.size();
    while (p < n && is_space(s_[p])) ++p;
    *ub = p;
    int depth = 0;
    while (p < n && is_url_char(s_[p])) {
      if (s_[p] == '(') {
        if (++depth > 32) return false;
      } else if (s_[p] == ')') {
        if (depth == 0) break;
        --depth;
      }
      ++p;
    }
    *ue = p;
    while (p < n && is_space(s_[p])) ++p;
    if (p >= n || s_[p] != ')' || *ue == *ub) return false;
    *end = p + 1;
    return true;
  }

  // A bare URL from i: URL characters, less trailing punctuation and unbalanced ')'.
  size_t scan_bare_url(size_t i) const {
    size_t e = i;
    while (e < s_.size() && is_url_char(s_[e])) ++e;
    while (e > i) {
      const char last = s_[e - 1];
      if (std::string_view(".,:;!?*_~").find(last) != std::string_view::npos) {
        --e;
      } else if (last == ')') {
        const auto span = s_.substr(i, e - i);
        if (std::count(span.begin(), span.end(), ')') > std::count(span.begin(), span.end(), '(')) --e;
        else break;
      } else {
        break;
      }
    }
    return e;
  }

  void tokenize() {
    const size_t n = s_.size();
    // Every maximal run of backticks, by length: a code span closes at the next one as long.
    std::map<size_t, std::vector<size_t>> runs;
    for (size_t i = 0; i < n;) {
      if (s_[i] != '`') {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < n && s_[j] == '`') ++j;
      runs[j - i].push_back(i);
      i = j;
    }
    std::vector<size_t> brackets;  // tokens of '[' that may still open a link
    size_t i = 0;
    while (i < n) {
      const char ch = s_[i];
      if (ch == '\\' && i + 1 < n && std::string_view("\\`*_[]()").find(s_[i + 1]) != std::string_view::npos) {
        add_text(i + 1, i + 2);
        i += 2;
      } else if (ch == '`') {
        size_t len = 0;
        while (i + len < n && s_[i + len] == '`') ++len;
        const auto it = runs.find(len);
        size_t close = n;
        if (it != runs.end()) {
          const auto next = std::lower_bound(it->second.begin(), it->second.end(), i + len);
          if (next != it->second.end()) close = *next;
        }
        if (close < n) {
          push(Kind::kCode, i + len, close);
          i = close + len;
        } else {
          add_text(i, i + len);
          i += len;
        }
      } else if (ch == '*' || ch == '_') {
        size_t len = 0;
        while (i + len < n && s_[i + len] == ch) ++len;
        const char before = i > 0 ? s_[i - 1] : '\n';
        const char after = i + len < n ? s_[i + len] : '\n';
        const bool left = !is_space(after) && (!is_ascii_punct(after) || is_space(before) || is_ascii_punct(before));
        const bool right = !is_space(before) && (!is_ascii_punct(before) || is_space(after) || is_ascii_punct(after));
        Tok& t = push(Kind::kDelim, i, i + len);
        t.c = ch;
        t.remaining = static_cast<int32_t>(len);
        t.can_open = ch == '*' ? left : left && (!right || is_ascii_punct(before));
        t.can_close = ch == '*' ? right : right && (!left || is_ascii_punct(after));
        i += len;
      } else if (ch == '\n') {
        push(Kind::kBreak, i, i + 1);
        ++i;
      } else if (ch == '[') {
        brackets.push_back(toks_.size());
        push(Kind::kBracket, i, i + 1);
        ++i;
      } else if (ch == ']') {
        size_t ub = 0, ue = 0, end = 0;
        if (!brackets.empty() && i + 1 < n && s_[i + 1] == '(' && parse_dest(i + 2, &ub, &ue, &end) &&
            url_ok(s_.substr(ub, ue - ub))) {
          const size_t open = brackets.back();
          toks_[open].kind = Kind::kLinkOpen;
          toks_[open].b = static_cast<uint32_t>(ub);
          toks_[open].e = static_cast<uint32_t>(ue);
          for (size_t k = open + 1; k < toks_.size(); ++k)
            if (toks_[k].kind == Kind::kAuto) toks_[k].kind = Kind::kText;  // no link in a link
          push(Kind::kLinkClose, i, end);
          brackets.clear();  // and no link around one
          i = end;
        } else {
          if (!brackets.empty()) brackets.pop_back();
          add_text(i, i + 1);
          ++i;
        }
      } else if ((ch == 'h' || ch == 'H') && (i == 0 || (!is_ascii_alnum(s_[i - 1]) && static_cast<unsigned char>(s_[i - 1]) < 0x80)) &&
                 (starts_with_ci(s_.substr(i), "http://") || starts_with_ci(s_.substr(i), "https://"))) {
        const size_t e = scan_bare_url(i);
        if (url_ok(s_.substr(i, e - i))) {
          push(Kind::kAuto, i, e);
        } else {
          add_text(i, e);  // the whole span, so that no suffix of it is scanned again
        }
        i = e;  // e > i: "http://" is kept whole
      } else {
        add_text(i, i + 1);
        ++i;
      }
    }
  }

  // CommonMark's "process emphasis" (without the rule of 3), run as closers are met: a closer looks
  // down the stack for the nearest opener of its character, above openers_bottom; the delimiters
  // between them can no longer match. Each link's text is its own context.
  void match_emphasis() {
    std::vector<int32_t> stack;
    size_t base = 0;
    size_t bottom[2] = {0, 0};
    size_t saved[2] = {0, 0};
    for (size_t ti = 0; ti < toks_.size(); ++ti) {
      Tok& t = toks_[ti];
      if (t.kind == Kind::kLinkOpen) {
        saved[0] = bottom[0];
        saved[1] = bottom[1];
        base = bottom[0] = bottom[1] = stack.size();
        continue;
      }
      if (t.kind == Kind::kLinkClose) {
        stack.resize(base);
        base = 0;
        bottom[0] = std::min(saved[0], stack.size());
        bottom[1] = std::min(saved[1], stack.size());
        continue;
      }
      if (t.kind != Kind::kDelim) continue;
      const int ci = t.c == '*' ? 0 : 1;
      if (t.can_close) {
        while (t.remaining > 0) {
          size_t found = SIZE_MAX;
          for (size_t j = stack.size(); j > bottom[ci]; --j) {
            if (toks_[stack[j - 1]].c == t.c) {
              found = j - 1;
              break;
            }
          }
          if (found == SIZE_MAX) {
            bottom[ci] = stack.size();
            break;
          }
          Tok& o = toks_[stack[found]];
          const int len = (o.remaining >= 2 && t.remaining >= 2) ? 2 : 1;
          const auto id = static_cast<int32_t>(pairs_.size());
          pairs_.push_back({t.c, static_cast<uint8_t>(len)});
          o.opens.push_back(id);
          t.closes.push_back(id);
          o.remaining -= len;
          t.remaining -= len;
          stack.resize(found + (o.remaining > 0 ? 1 : 0));
          for (size_t& b : bottom) b = std::min(b, stack.size());
        }
      }
      if (t.remaining > 0 && t.can_open) stack.push_back(static_cast<int32_t>(ti));
    }
  }

  void write(std::string& out) {
    std::vector<uint8_t> literal(pairs_.size(), 0);
    int depth = 0;
    for (const Tok& t : toks_) {
      const std::string_view text = s_.substr(t.b, t.e - t.b);
      switch (t.kind) {
        case Kind::kText: append_escaped(out, text); break;
        case Kind::kBracket: out += '['; break;
        case Kind::kBreak: out += "<br>\n"; break;
        case Kind::kLinkOpen: append_href(out, text); break;
        case Kind::kLinkClose: out += "</a>"; break;
        case Kind::kAuto:
          append_href(out, text);
          append_escaped(out, text);
          out += "</a>";
          break;
        case Kind::kCode: {
          std::string code(text);
          std::replace(code.begin(), code.end(), '\n', ' ');
          if (code.size() >= 2 && code.front() == ' ' && code.back() == ' ' &&
              code.find_first_not_of(' ') != std::string::npos)
            code = code.substr(1, code.size() - 2);
          out += "<code>";
          append_escaped(out, code);
          out += "</code>";
          break;
        }
        case Kind::kDelim:
          for (int32_t p : t.closes) {
            if (literal[p]) {
              out.append(pairs_[p].len, pairs_[p].c);
            } else {
              out += pairs_[p].len == 2 ? "</strong>" : "</em>";
              --depth;
            }
          }
          out.append(static_cast<size_t>(t.remaining), t.c);
          for (auto it = t.opens.rbegin(); it != t.opens.rend(); ++it) {
            const int32_t p = *it;
            if (depth >= kMarkdownMaxEmphasisDepth) {
              literal[p] = 1;
              out.append(pairs_[p].len, pairs_[p].c);
            } else {
              out += pairs_[p].len == 2 ? "<strong>" : "<em>";
              ++depth;
            }
          }
          break;
      }
    }
  }

  std::string_view s_;
  std::vector<Tok> toks_;
  std::vector<Pair> pairs_;
};

std::string_view trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return s.substr(b, e - b);
}

size_t backtick_prefix(std::string_view s) {
  size_t k = 0;
  while (k < s.size() && s[k] == '`') ++k;
  return k;
}

}  // namespace

std::string render_comment_markdown(std::string_view text) {
  const std::string clean = sanitize(text);
  const std::string_view all(clean);
  std::string out;
  auto begin_block = [&] {
    if (!out.empty()) out += '\n';
  };

  std::string para;  // the current paragraph's trimmed lines, joined by \n
  auto flush_para = [&] {
    if (para.empty()) return;
    begin_block();
    out += "<p>";
    InlineRenderer(para).render(out);
    out += "</p>";
    para.clear();
  };

  bool in_fence = false;
  size_t fence_len = 0;
  for (size_t pos = 0; pos < all.size();) {
    size_t nl = all.find('\n', pos);
    if (nl == std::string_view::npos) nl = all.size();
    const std::string_view line = all.substr(pos, nl - pos);
    pos = nl + 1;
    const std::string_view trimmed = trim(line);
    if (in_fence) {
      const size_t ticks = backtick_prefix(trimmed);
      if (ticks >= fence_len && ticks == trimmed.size()) {
        out += "</code></pre>";
        in_fence = false;
      } else {
        append_escaped(out, line);
        out += '\n';
      }
      continue;
    }
    if (trimmed.empty()) {
      flush_para();
      continue;
    }
    const size_t ticks = backtick_prefix(trimmed);
    if (ticks >= 3) {
      const std::string_view info = trim(trimmed.substr(ticks));
      if (info.find_first_of(" \t`") == std::string_view::npos) {
        flush_para();
        begin_block();
        std::string lang;
        for (char c : info) lang += lower(c);
        bool lang_ok = !lang.empty() && lang.size() <= 20;
        for (char c : lang) lang_ok = lang_ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-');
        out += lang_ok ? "<pre><code class=\"language-" + lang + "\">" : std::string("<pre><code>");
        in_fence = true;
        fence_len = ticks;
        continue;
      }
    }
    if (!para.empty()) para += '\n';
    para.append(trimmed);
  }
  if (in_fence) out += "</code></pre>";
  flush_para();
  return out;
}

}  // namespace blocklab::server
