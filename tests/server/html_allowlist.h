// The allow-list checker for the comment renderer's HTML (server/markdown.h), used by
// tests/server/markdown_test.cpp and tests/fuzz/fuzz_markdown.cpp. A tiny tokenizer, independent of
// the renderer, strict on purpose: anything it cannot read as one of the allowed constructs fails.
//
//   tags        p br em strong code pre a, each written <name> or <name attr="v" ...> or </name>
//               (lower-case, double quotes, single spaces); br has no end tag, every other one is
//               closed in order (no stray or crossing tags), a is not inside a, p and pre are not
//               inside anything, pre holds one code and nothing else; at most 64 deep
//   attributes  a: href (required) and rel (exactly "nofollow noopener noreferrer"); code: class
//               (language-[a-z0-9+-]{1,20}, only directly inside pre); none twice, nothing else
//   href        begins with http:// or https:// followed by a letter or digit
//   any value   no '<' or '>', and, with its character references decoded and lower-cased, no
//               "javascript:" or "vbscript:" and no "on<letters>=" after a non-alphanumeric
//   text        no '<' but one that begins an allowed tag, no '>', '"' or '\'', and '&' only in
//               &lt; &gt; &amp; &quot; &#39;; valid UTF-8, no control character but \n and \t
// Linear in the input, no recursion.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace blocklab::test {

namespace allowlist_detail {

inline bool alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
inline char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// The five references the renderer writes, or 0.
inline size_t entity_len(std::string_view s, size_t i, char* decoded) {
  static const std::pair<std::string_view, char> kEntities[] = {
      {"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&quot;", '"'}, {"&#39;", '\''}};
  for (const auto& [e, c] : kEntities) {
    if (s.substr(i, e.size()) == e) {
      *decoded = c;
      return e.size();
    }
  }
  return 0;
}

inline std::string value_problem(std::string_view raw) {
  std::string v;
  for (size_t i = 0; i < raw.size();) {
    char c = 0;
    if (raw[i] == '&') {
      const size_t len = entity_len(raw, i, &c);
      if (len == 0) return "an unescaped '&' in an attribute value";
      v += lower(c);
      i += len;
      continue;
    }
    if (raw[i] == '<' || raw[i] == '>' || raw[i] == '\'') return "a raw '<', '>' or quote in an attribute value";
    v += lower(raw[i++]);
  }
  for (std::string_view bad : {"javascript:", "vbscript:"})
    if (v.find(bad) != std::string::npos) return "\"" + std::string(bad) + "\" in an attribute value";
  for (size_t i = 0; i + 1 < v.size(); ++i) {
    if (v[i] != 'o' || v[i + 1] != 'n' || (i > 0 && alnum(v[i - 1]))) continue;
    size_t k = i + 2;
    while (k < v.size() && v[k] >= 'a' && v[k] <= 'z') ++k;
    while (k < v.size() && (v[k] == ' ' || v[k] == '\t' || v[k] == '\n')) ++k;
    if (k > i + 2 && k < v.size() && v[k] == '=') return "an event-handler pattern in an attribute value";
  }
  return "";
}

inline bool language_class(std::string_view v) {
  constexpr std::string_view kPrefix = "language-";
  if (v.substr(0, kPrefix.size()) != kPrefix) return false;
  const std::string_view lang = v.substr(kPrefix.size());
  if (lang.empty() || lang.size() > 20) return false;
  for (char c : lang)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-')) return false;
  return true;
}

inline bool valid_utf8_at(std::string_view s, size_t i, size_t* len) {
  const auto b = static_cast<unsigned char>(s[i]);
  unsigned char lo = 0x80, hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) *len = 2;
  else if (b >= 0xE0 && b <= 0xEF) { *len = 3; if (b == 0xE0) lo = 0xA0; if (b == 0xED) hi = 0x9F; }
  else if (b >= 0xF0 && b <= 0xF4) { *len = 4; if (b == 0xF0) lo = 0x90; if (b == 0xF4) hi = 0x8F; }
  else return false;
  if (i + *len > s.size()) return false;
  for (size_t k = 1; k < *len; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) return false;
  }
  return true;
}

}  // namespace allowlist_detail

// "" when `html` passes, else what is wrong and at which byte offset.
inline std::string check_allowlist(std::string_view html) {
  using namespace allowlist_detail;
  static const std::string_view kTags[] = {"p", "br", "em", "strong", "code", "pre", "a"};
  std::vector<std::string_view> open;  // the tags open, outermost first
  bool pre_has_code = false;           // the open pre already holds its code
  auto fail = [](size_t at, const std::string& what) { return what + " at byte " + std::to_string(at); };
  const size_t n = html.size();
  size_t i = 0;
  while (i < n) {
    const char ch = html[i];
    const auto b = static_cast<unsigned char>(ch);
    if (ch == '<') {
      const size_t start = i++;
      const bool closing = i < n && html[i] == '/';
      if (closing) ++i;
      const size_t name_from = i;
      while (i < n && html[i] >= 'a' && html[i] <= 'z') ++i;
      const std::string_view name = html.substr(name_from, i - name_from);
      bool known = false;
      for (std::string_view t : kTags) known = known || t == name;
      if (!known) return fail(start, "a '<' that does not begin an allowed tag");
      bool has_href = false, has_rel = false, has_class = false;
      while (!closing && i < n && html[i] == ' ') {
        ++i;
        const size_t attr_from = i;
        while (i < n && html[i] >= 'a' && html[i] <= 'z') ++i;
        const std::string_view attr = html.substr(attr_from, i - attr_from);
        if (i + 1 >= n || html[i] != '=' || html[i + 1] != '"') return fail(attr_from, "an attribute not written name=\"value\"");
        i += 2;
        const size_t value_from = i;
        while (i < n && html[i] != '"') ++i;
        if (i >= n) return fail(value_from, "an unterminated attribute value");
        const std::string_view value = html.substr(value_from, i - value_from);
        ++i;
        if (const std::string p = value_problem(value); !p.empty()) return fail(value_from, p);
        if (name == "a" && attr == "href" && !has_href) {
          has_href = true;
          size_t host = 0;
          if (value.substr(0, 7) == "http://") host = 7;
          else if (value.substr(0, 8) == "https://") host = 8;
          if (host == 0 || value.size() <= host || !alnum(value[host]))
            return fail(value_from, "an href that does not begin with http:// or https:// and a host");
        } else if (name == "a" && attr == "rel" && !has_rel) {
          has_rel = true;
          if (value != "nofollow noopener noreferrer") return fail(value_from, "a rel other than \"nofollow noopener noreferrer\"");
        } else if (name == "code" && attr == "class" && !has_class) {
          has_class = true;
          if (!language_class(value)) return fail(value_from, "a class other than language-[a-z0-9+-]{1,20}");
        } else {
          return fail(attr_from, "the attribute \"" + std::string(attr) + "\" (not allowed on " + std::string(name) + ", or twice)");
        }
      }
      if (i >= n || html[i] != '>') return fail(start, "a tag not closed by '>' right after its attributes");
      ++i;
      if (closing) {
        if (open.empty() || open.back() != name) return fail(start, "an end tag </" + std::string(name) + "> that closes nothing open");
        open.pop_back();
        continue;
      }
      if (name == "a" && !has_href) return fail(start, "an a without href");
      if (name == "a" && !has_rel) return fail(start, "an a without rel");
      const bool in_pre = !open.empty() && open.back() == "pre";
      if (in_pre && (name != "code" || pre_has_code)) return fail(start, "something in pre but its one code");
      if (has_class && !in_pre) return fail(start, "a class on a code outside pre");
      if ((name == "p" || name == "pre") && !open.empty()) return fail(start, "a block tag inside another tag");
      if (name == "a") {
        for (std::string_view t : open)
          if (t == "a") return fail(start, "a link inside a link");
      }
      if (name == "pre") pre_has_code = false;
      if (in_pre) pre_has_code = true;
      if (name != "br") open.push_back(name);
      if (open.size() > 64) return fail(start, "tags nested more than 64 deep");
      continue;
    }
    if (!open.empty() && open.back() == "pre") return fail(i, "text in pre outside its code");
    if (ch == '>' || ch == '"' || ch == '\'') return fail(i, "an unescaped '>' or quote in text");
    if (ch == '&') {
      char c = 0;
      const size_t len = entity_len(html, i, &c);
      if (len == 0) return fail(i, "an '&' that is not &lt; &gt; &amp; &quot; or &#39;");
      i += len;
      continue;
    }
    if ((b < 0x20 && ch != '\n' && ch != '\t') || b == 0x7f) return fail(i, "a control character");
    if (b >= 0x80) {
      size_t len = 0;
      if (!valid_utf8_at(html, i, &len)) return fail(i, "invalid UTF-8");
      i += len;
      continue;
    }
    ++i;
  }
  if (!open.empty()) return fail(n, "<" + std::string(open.back()) + "> left open at the end");
  return "";
}

}  // namespace blocklab::test
