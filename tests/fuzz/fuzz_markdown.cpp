// libFuzzer harness: a comment's text as a signed-in user posts it (server/markdown.h's
// render_comment_markdown, which the server runs before storing or showing a comment). Any bytes must
// render, without an exception, to HTML that passes the allow-list checker of the tests
// (tests/server/html_allowlist.h: only p br em strong code pre a, only href/rel/class as allowed, every
// href http(s), everything else escaped, tags balanced); a violation is printed and traps.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "../server/html_allowlist.h"
#include "fuzz_common.h"
#include "server/markdown.h"

using namespace blocklab;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  fuzz::guarded<fuzz::NoExceptionExpected>("fuzz_markdown", [&] {
    const std::string html = server::render_comment_markdown(text);
    const std::string problem = test::check_allowlist(html);
    if (!problem.empty()) {
      std::fprintf(stderr, "fuzz_markdown: the rendering fails the allow-list: %s\n--- html ---\n%s\n", problem.c_str(),
                   html.c_str());
      std::fflush(stderr);
      __builtin_trap();
    }
    // The same text again must give the same HTML (no hidden state).
    if (server::render_comment_markdown(text) != html) {
      std::fprintf(stderr, "fuzz_markdown: two renderings differ\n");
      __builtin_trap();
    }
  });
  return 0;
}
