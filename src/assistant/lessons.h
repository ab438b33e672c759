// The lessons' text as structured content (docs/lessons.md): lessons/<page>.md, one file per page of the
// web app, parsed into pages of sections with stable ids. The web app renders the same files (its Vite
// plugin web/plugins/lessons.ts); the assistant indexes them. No I/O: the files are compiled in.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"

namespace blocklab::assistant {

struct Section {
  std::string page, id, title;
  std::string widget;                 // "layernorm?tab=mean": the app state it shows; "" = its page
  std::vector<std::string> keywords;  // words a learner uses that the text does not
  std::string kind = "intuition";     // intuition | maths | widget | notice | misunderstanding | summary | code | exercise
  std::string body;                   // the Markdown subset, blank lines around it trimmed
  std::string key() const { return page + "#" + id; }  // "layernorm#why": the comments' section id too
};

struct LessonPage {
  std::string page, title;
  std::vector<std::string> suggest;  // suggested questions for the page's assistant panel
  std::vector<Section> sections;
};

// Parses one file; `file` is its name (e.g. "layernorm.md"), for messages and the page-name check. A
// malformed file is an error naming the file, the line and what was expected.
Result<LessonPage> parse_lesson(std::string_view file, std::string_view text);

struct LessonFile {
  const char* name;
  const char* text;
};
// The files compiled into this binary, in name order.
const std::vector<LessonFile>& builtin_lesson_files();
// The assistant's evaluation set (lessons/assistant_eval.json), compiled in.
std::string_view builtin_eval_set();

// Every built-in page, parsed; an error names the first malformed file (the build's tests catch it).
Result<std::vector<LessonPage>> builtin_lessons();

// {"pages": [{page, title, suggest, sections: [{id, title, widget, keywords, kind, body}]}]}: what
// `blocklab assistant sections --json` prints and the web's parser must agree with.
nlohmann::json lessons_json(const std::vector<LessonPage>& pages);

// The web app's path that opens a section: its widget's state, then the anchor:
// "/?page=layernorm&tab=mean#step-by-step". `query` adds (or replaces) state keys, already encoded.
std::string section_url(const Section& s, const std::vector<std::pair<std::string, std::string>>& query = {});
// Percent-encodes a URL query value (keeps the unreserved characters and , ; . -).
std::string url_value(std::string_view v);

}  // namespace blocklab::assistant
