#include "assistant/lessons.h"

#include <algorithm>
#include <regex>
#include <set>

namespace blocklab::assistant {

namespace {

const std::set<std::string> kKinds = {"intuition", "maths", "widget", "notice", "misunderstanding", "summary", "code", "exercise"};

std::string rtrim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.pop_back();
  return s;
}
std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t");
  return a == std::string::npos ? "" : rtrim(s.substr(a));
}

std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t nl = text.find('\n', start);
    const size_t end = nl == std::string_view::npos ? text.size() : nl;
    lines.push_back(rtrim(std::string(text.substr(start, end - start))));
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

std::vector<std::string> split_keywords(const std::string& v) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= v.size()) {
    const size_t c = std::min(v.find(',', start), v.size());
    std::string k = trim(v.substr(start, c - start));
    if (!k.empty()) out.push_back(std::move(k));
    start = c + 1;
  }
  return out;
}

}  // namespace

Result<LessonPage> parse_lesson(std::string_view file, std::string_view text) {
  const std::string f(file);
  const std::vector<std::string> lines = split_lines(text);
  auto fail = [&](size_t i, const std::string& what) {
    return Status::error(f + ":" + std::to_string(i + 1) + ": " + what);
  };
  LessonPage page;
  if (lines.empty() || lines[0] != "---") return fail(0, "expected '---' (the front matter) on the first line");
  size_t i = 1;
  static const std::regex kMeta(R"(^([a-z_]+):\s*(.*)$)");
  std::smatch m;
  for (;; ++i) {
    if (i >= lines.size()) return fail(i - 1, "expected '---' to end the front matter, got the end of the file");
    if (lines[i] == "---") break;
    if (lines[i].empty()) continue;
    if (!std::regex_match(lines[i], m, kMeta)) return fail(i, "expected 'key: value' in the front matter, got \"" + lines[i] + "\"");
    const std::string key = m[1], value = trim(m[2]);
    if (key == "page") page.page = value;
    else if (key == "title") page.title = value;
    else if (key == "suggest") {
      if (value.empty()) return fail(i, "suggest: expected a question, got nothing");
      page.suggest.push_back(value);
    } else return fail(i, "unknown front-matter key '" + key + "' (expected page, title or suggest)");
  }
  const std::string stem = f.size() > 3 && f.ends_with(".md") ? f.substr(0, f.size() - 3) : f;
  if (page.page != stem) return fail(0, "page: expected \"" + stem + "\" (the file's name), got \"" + page.page + "\"");
  if (page.title.empty()) return fail(0, "title: expected the page's title, got nothing");
  ++i;

  static const std::regex kHeading(R"(^## (.+) \{#([a-z0-9-]+)\}$)");
  std::set<std::string> ids;
  Section* s = nullptr;
  std::vector<std::string> body;
  size_t display_open = 0;  // the line of an unterminated "$$", or 0
  auto finish = [&]() -> Status {
    if (!s) return Status::ok();
    if (display_open) return fail(display_open - 1, "expected '$$' to close this display formula before the next section");
    while (!body.empty() && body.back().empty()) body.pop_back();
    size_t a = 0;
    while (a < body.size() && body[a].empty()) ++a;
    std::string joined;
    for (size_t k = a; k < body.size(); ++k) joined += (k > a ? "\n" : "") + body[k];
    s->body = std::move(joined);
    body.clear();
    return Status::ok();
  };
  for (; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (line.starts_with("## ")) {
      if (!std::regex_match(line, m, kHeading))
        return fail(i, "expected a section heading '## Title {#id}' (id of a-z, 0-9 and -), got \"" + line + "\"");
      BLOCKLAB_RETURN_IF_ERROR(finish());
      Section n;
      n.page = page.page;
      n.title = trim(m[1]);
      n.id = m[2];
      if (!ids.insert(n.id).second) return fail(i, "section id '" + n.id + "': expected a new id, got one used above");
      page.sections.push_back(std::move(n));
      s = &page.sections.back();
      std::set<std::string> seen;
      while (i + 1 < lines.size() && std::regex_match(lines[i + 1], m, kMeta)) {
        ++i;
        const std::string key = m[1], value = trim(m[2]);
        if (!seen.insert(key).second) return fail(i, key + ": expected once per section, got it again");
        if (key == "widget") {
          static const std::regex kWidget(R"(^[a-z][a-z-]*(\?[^\s#]*)?$)");
          if (!std::regex_match(value, kWidget))
            return fail(i, "widget: expected a page id and its state, like layernorm?tab=mean, got \"" + value + "\"");
          s->widget = value;
        } else if (key == "keywords") {
          s->keywords = split_keywords(value);
        } else if (key == "kind") {
          if (!kKinds.count(value))
            return fail(i, "kind: expected one of intuition, maths, widget, notice, misunderstanding, summary, code, exercise, got \"" + value + "\"");
          s->kind = value;
        } else {
          return fail(i, "unknown section key '" + key + "' (expected widget, keywords or kind)");
        }
      }
      continue;
    }
    if (!s) {
      if (line.empty()) continue;
      return fail(i, "expected a section heading '## Title {#id}' before any text, got \"" + line + "\"");
    }
    if (trim(line) == "$$") display_open = display_open ? 0 : i + 1;
    body.push_back(line);
  }
  BLOCKLAB_RETURN_IF_ERROR(finish());
  if (page.sections.empty()) return fail(lines.size() - 1, "expected at least one section, got none");
  return page;
}

Result<std::vector<LessonPage>> builtin_lessons() {
  std::vector<LessonPage> pages;
  for (const LessonFile& f : builtin_lesson_files()) {
    Result<LessonPage> p = parse_lesson(f.name, f.text);
    if (!p) return p.status();
    pages.push_back(std::move(p).value());
  }
  return pages;
}

nlohmann::json lessons_json(const std::vector<LessonPage>& pages) {
  nlohmann::json out = nlohmann::json::array();
  for (const LessonPage& p : pages) {
    nlohmann::json sections = nlohmann::json::array();
    for (const Section& s : p.sections)
      sections.push_back({{"id", s.id}, {"title", s.title}, {"widget", s.widget}, {"keywords", s.keywords}, {"kind", s.kind}, {"body", s.body}});
    out.push_back({{"page", p.page}, {"title", p.title}, {"suggest", p.suggest}, {"sections", sections}});
  }
  return {{"pages", out}};
}

std::string url_value(std::string_view v) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : v) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == ',' || c == ';') out += char(c);
    else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string section_url(const Section& s, const std::vector<std::pair<std::string, std::string>>& query) {
  std::string target = s.widget.empty() ? s.page : s.widget;
  const size_t q = target.find('?');
  const std::string page = target.substr(0, q);
  std::vector<std::pair<std::string, std::string>> params;
  if (q != std::string::npos) {
    std::string rest = target.substr(q + 1);
    size_t start = 0;
    while (start < rest.size()) {
      const size_t amp = std::min(rest.find('&', start), rest.size());
      const std::string kv = rest.substr(start, amp - start);
      const size_t eq = kv.find('=');
      if (!kv.empty()) params.emplace_back(kv.substr(0, eq), eq == std::string::npos ? "" : kv.substr(eq + 1));
      start = amp + 1;
    }
  }
  for (const auto& kv : query) {
    auto it = std::find_if(params.begin(), params.end(), [&](const auto& p) { return p.first == kv.first; });
    if (it != params.end()) it->second = kv.second;
    else params.push_back(kv);
  }
  std::string url = "/?page=" + page;
  for (const auto& [k, v] : params) url += "&" + k + "=" + v;
  return url + "#" + s.id;
}

}  // namespace blocklab::assistant
