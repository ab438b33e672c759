// The comment renderer (server/markdown.h): each construct with its exact HTML, the input repairs,
// adversarial inputs that must finish, and tests/server/xss_payloads.txt, every rendering of which
// must pass the allow-list checker (html_allowlist.h) — itself tested here on HTML it must refuse.
#include "server/markdown.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "html_allowlist.h"

namespace blocklab::server {
namespace {

const std::string kRel = " rel=\"nofollow noopener noreferrer\"";
std::string a(const std::string& href, const std::string& text) {
  return "<a href=\"" + href + "\"" + kRel + ">" + text + "</a>";
}

std::string render(std::string_view s) {
  std::string out = render_comment_markdown(s);
  EXPECT_EQ(test::check_allowlist(out), "") << "input: " << s << "\noutput: " << out;
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

TEST(Markdown, EmptyAndBlankGiveNothing) {
  EXPECT_EQ(render(""), "");
  EXPECT_EQ(render(" \n\t\n\n"), "");
}

TEST(Markdown, Paragraphs) {
  EXPECT_EQ(render("hello"), "<p>hello</p>");
  EXPECT_EQ(render("a\n\nb"), "<p>a</p>\n<p>b</p>");
  EXPECT_EQ(render("\n\n  a  \n \t \n\n\nb\n"), "<p>a</p>\n<p>b</p>");
}

TEST(Markdown, SingleNewlineIsBr) {
  EXPECT_EQ(render("a\nb\n  c"), "<p>a<br>\nb<br>\nc</p>");
}

TEST(Markdown, CarriageReturnsNormalised) {
  EXPECT_EQ(render("a\r\nb\r\n\r\nc\rd"), "<p>a<br>\nb</p>\n<p>c<br>\nd</p>");
}

TEST(Markdown, Emphasis) {
  EXPECT_EQ(render("*a* and _b_"), "<p><em>a</em> and <em>b</em></p>");
  EXPECT_EQ(render("2*3*4"), "<p>2<em>3</em>4</p>");
  EXPECT_EQ(render("snake_case_name"), "<p>snake_case_name</p>");
  EXPECT_EQ(render("*a\nb*"), "<p><em>a<br>\nb</em></p>");
}

TEST(Markdown, Strong) {
  EXPECT_EQ(render("**a** and __b__"), "<p><strong>a</strong> and <strong>b</strong></p>");
  EXPECT_EQ(render("***a***"), "<p><em><strong>a</strong></em></p>");
  EXPECT_EQ(render("**a *b* c**"), "<p><strong>a <em>b</em> c</strong></p>");
}

TEST(Markdown, UnmatchedDelimitersAreText) {
  EXPECT_EQ(render("*a"), "<p>*a</p>");
  EXPECT_EQ(render("a * b * c"), "<p>a * b * c</p>");
  EXPECT_EQ(render("**a*"), "<p>*<em>a</em></p>");
  EXPECT_EQ(render("*a _b* c_"), "<p><em>a _b</em> c_</p>");
}

TEST(Markdown, BackslashEscapes) {
  EXPECT_EQ(render("\\*a\\* \\_b\\_ \\`c\\` \\[d\\](e) \\\\"), "<p>*a* _b_ `c` [d](e) \\</p>");
  EXPECT_EQ(render("a\\b \\<"), "<p>a\\b \\&lt;</p>");
}

TEST(Markdown, InlineCode) {
  EXPECT_EQ(render("`a<b>&\"'`"), "<p><code>a&lt;b&gt;&amp;&quot;&#39;</code></p>");
  EXPECT_EQ(render("``a`b``"), "<p><code>a`b</code></p>");
  EXPECT_EQ(render("`` `a` ``"), "<p><code>`a`</code></p>");
  EXPECT_EQ(render("`*a* [b](http://c)`"), "<p><code>*a* [b](http://c)</code></p>");
  EXPECT_EQ(render("`a\nb`"), "<p><code>a b</code></p>");
  EXPECT_EQ(render("`a"), "<p>`a</p>");
  EXPECT_EQ(render("``a`"), "<p>``a`</p>");
}

TEST(Markdown, FencedCode) {
  EXPECT_EQ(render("```\n<script>alert(1)</script>\n  x\n```"),
            "<pre><code>&lt;script&gt;alert(1)&lt;/script&gt;\n  x\n</code></pre>");
  EXPECT_EQ(render("```cpp\nint a;\n```"), "<pre><code class=\"language-cpp\">int a;\n</code></pre>");
  EXPECT_EQ(render("```C++\nx\n```"), "<pre><code class=\"language-c++\">x\n</code></pre>");
  EXPECT_EQ(render("```\n```"), "<pre><code></code></pre>");
  EXPECT_EQ(render("````\n```\n````"), "<pre><code>```\n</code></pre>");
  EXPECT_EQ(render("```\n**a** *b*\n\n[c](http://d)\n"), "<pre><code>**a** *b*\n\n[c](http://d)\n</code></pre>");
}

TEST(Markdown, FenceLanguageOutsideTheSetIsDropped) {
  EXPECT_EQ(render("```x\"onload=alert(1)\nx\n```"), "<pre><code>x\n</code></pre>");
  EXPECT_EQ(render("```language_x\nx\n```"), "<pre><code>x\n</code></pre>");
  EXPECT_EQ(render("```abcdefghijklmnopqrstu\nx\n```"), "<pre><code>x\n</code></pre>");  // 21
  EXPECT_EQ(render("```abcdefghijklmnopqrst\nx\n```"),
            "<pre><code class=\"language-abcdefghijklmnopqrst\">x\n</code></pre>");
}

TEST(Markdown, FenceInterruptsParagraphAndRunsToTheEnd) {
  EXPECT_EQ(render("text\n```\nx\n```\nmore"), "<p>text</p>\n<pre><code>x\n</code></pre>\n<p>more</p>");
  EXPECT_EQ(render("```\nopen\n\nstill"), "<pre><code>open\n\nstill\n</code></pre>");
  EXPECT_EQ(render("```a b\nx"), "<p>```a b<br>\nx</p>");  // two words: not a fence
}

TEST(Markdown, Links) {
  EXPECT_EQ(render("[a](http://x.com)"), "<p>" + a("http://x.com", "a") + "</p>");
  EXPECT_EQ(render("[a b]( https://x.com/p?q=1&r=2#f )"),
            "<p>" + a("https://x.com/p?q=1&amp;r=2#f", "a b") + "</p>");
  EXPECT_EQ(render("[a](HTTPS://X.com)"), "<p>" + a("https://X.com", "a") + "</p>");
  EXPECT_EQ(render("[*a* `b`](http://x)"), "<p>" + a("http://x", "<em>a</em> <code>b</code>") + "</p>");
  EXPECT_EQ(render("[w](https://en.wikipedia.org/wiki/A_(b))"),
            "<p>" + a("https://en.wikipedia.org/wiki/A_(b)", "w") + "</p>");
  EXPECT_EQ(render("*see [x](http://y)*"), "<p><em>see " + a("http://y", "x") + "</em></p>");
  EXPECT_EQ(render("[*a](http://x)*"), "<p>" + a("http://x", "*a") + "*</p>");
}

TEST(Markdown, LinksDoNotNest) {
  EXPECT_EQ(render("[http://a](http://b)"), "<p>" + a("http://b", "http://a") + "</p>");
  EXPECT_EQ(render("[a [b](http://x) c](http://y)"),
            "<p>[a " + a("http://x", "b") + " c](" + a("http://y", "http://y") + ")</p>");
}

TEST(Markdown, OnlyHttpLinks) {
  EXPECT_EQ(render("[x](javascript:alert(1))"), "<p>[x](javascript:alert(1))</p>");
  EXPECT_EQ(render("[x](JaVaScRiPt:alert(1))"), "<p>[x](JaVaScRiPt:alert(1))</p>");
  EXPECT_EQ(render("[x](data:text/html,hi)"), "<p>[x](data:text/html,hi)</p>");
  EXPECT_EQ(render("[x](vbscript:msgbox)"), "<p>[x](vbscript:msgbox)</p>");
  EXPECT_EQ(render("[x](file:///etc/passwd)"), "<p>[x](file:///etc/passwd)</p>");
  EXPECT_EQ(render("[x](//evil.com)"), "<p>[x](//evil.com)</p>");
  EXPECT_EQ(render("[x](/relative)"), "<p>[x](/relative)</p>");
  EXPECT_EQ(render("[x](http://)"), "<p>[x](http://)</p>");
  EXPECT_EQ(render("[x](http:///evil)"), "<p>[x](http:///evil)</p>");
  EXPECT_EQ(render("[x](%68ttp://a)"), "<p>[x](%68ttp://a)</p>");
}

TEST(Markdown, UrlsWithQuotesOrHiddenSchemesAreText) {
  EXPECT_EQ(render("[x](http://a\" onclick=\"alert(1))"), "<p>[x](" + a("http://a", "http://a") +
                                                            "&quot; onclick=&quot;alert(1))</p>");
  EXPECT_EQ(render("[x](http://a/&#x6a;avascript:alert(1))"), "<p>[x](http://a/&amp;#x6a;avascript:alert(1))</p>");
  EXPECT_EQ(render("[x](http://a/?u=%6Aavascript%3Aalert(1))"), "<p>[x](http://a/?u=%6Aavascript%3Aalert(1))</p>");
  EXPECT_EQ(render("[x](http://a/?%22onclick=1)"), "<p>[x](http://a/?%22onclick=1)</p>");
  EXPECT_EQ(render("[x](http://a/?&#97;onclick=1)"), "<p>[x](http://a/?&amp;#97;onclick=1)</p>");
  EXPECT_EQ(render("[x](http://a/?q=1&onclick=1)"), "<p>[x](http://a/?q=1&amp;onclick=1)</p>");
  EXPECT_EQ(render("[x](http://a/?lesson=1&month=2)"),
            "<p>" + a("http://a/?lesson=1&amp;month=2", "x") + "</p>");
  EXPECT_EQ(render("[\"onmouseover=alert(1)](http://a)"), "<p>" + a("http://a", "&quot;onmouseover=alert(1)") + "</p>");
}

TEST(Markdown, BareUrls) {
  EXPECT_EQ(render("see http://a.com."), "<p>see " + a("http://a.com", "http://a.com") + ".</p>");
  EXPECT_EQ(render("(https://a.com/x_(y))!"), "<p>(" + a("https://a.com/x_(y)", "https://a.com/x_(y)") + ")!</p>");
  EXPECT_EQ(render("HTTP://a.com/?q=1&r=2"), "<p>" + a("http://a.com/?q=1&amp;r=2", "HTTP://a.com/?q=1&amp;r=2") + "</p>");
  EXPECT_EQ(render("*http://a.com*"), "<p><em>" + a("http://a.com", "http://a.com") + "</em></p>");
  EXPECT_EQ(render("xhttp://a.com"), "<p>xhttp://a.com</p>");
  EXPECT_EQ(render("http://a.com/\"onmouseover=alert(1)"),
            "<p>" + a("http://a.com/", "http://a.com/") + "&quot;onmouseover=alert(1)</p>");
  EXPECT_EQ(render("http://a/?x=javascript:alert(1)"), "<p>http://a/?x=javascript:alert(1)</p>");
  EXPECT_EQ(render("`http://a.com`"), "<p><code>http://a.com</code></p>");
  EXPECT_EQ(render("ftp://a.com"), "<p>ftp://a.com</p>");
}

TEST(Markdown, EverythingElseIsEscapedText) {
  EXPECT_EQ(render("<b>&\"'</b>"), "<p>&lt;b&gt;&amp;&quot;&#39;&lt;/b&gt;</p>");
  EXPECT_EQ(render("&lt;script&gt; &amp;lt;"), "<p>&amp;lt;script&amp;gt; &amp;amp;lt;</p>");
  EXPECT_EQ(render("# h\n> q\n- l"), "<p># h<br>\n&gt; q<br>\n- l</p>");
}

TEST(Markdown, InvalidUtf8BecomesReplacementCharacter) {
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(render("a\xff" "b"), "<p>a" + fffd + "b</p>");
  EXPECT_EQ(render("\xC0\xAF"), "<p>" + fffd + fffd + "</p>");              // overlong '/'
  EXPECT_EQ(render("\xED\xA0\x80"), "<p>" + fffd + fffd + fffd + "</p>");  // a surrogate
  EXPECT_EQ(render("\xF4\x90\x80\x80"), "<p>" + fffd + fffd + fffd + fffd + "</p>");  // above U+10FFFF
  EXPECT_EQ(render("x\xE2\x82"), "<p>x" + fffd + fffd + "</p>");          // truncated
  EXPECT_EQ(render("\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"), "<p>\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80</p>");
}

TEST(Markdown, ControlCharactersDropped) {
  EXPECT_EQ(render(std::string("a\0b\x01" "c\td\x1b[31m\x7f" "e", 14)), "<p>abc\td[31me</p>");
  EXPECT_EQ(render(std::string("[x](java\0script:alert(1))", 25)), "<p>[x](javascript:alert(1))</p>");
}

TEST(Markdown, EmphasisNestingIsCapped) {
  const std::string s = std::string(40, '*') + "a" + std::string(40, '*');
  const std::string out = render(s);
  size_t tags = 0;
  for (size_t p = out.find("<em>"); p != std::string::npos; p = out.find("<em>", p + 1)) ++tags;
  for (size_t p = out.find("<strong>"); p != std::string::npos; p = out.find("<strong>", p + 1)) ++tags;
  EXPECT_EQ(tags, size_t(kMarkdownMaxEmphasisDepth));
  EXPECT_EQ(render("*a _b *c _d *e _f *g _h *i _j k_ j* i_ h* g_ f* e_ d* c_ b* a_").find("<em>"), 3u);
}

// Each must finish (ctest's timeout would stop it otherwise) and give allowed HTML.
TEST(Markdown, AdversarialInputsFinish) {
  auto repeat = [](const std::string& unit, size_t total) {
    std::string s;
    while (s.size() < total) s += unit;
    return s;
  };
  const size_t n = 200000;
  const std::vector<std::string> inputs = {
      repeat("[[[[(", n),
      repeat("***", n),
      repeat("[[[[(***", n),
      std::string(n, '*') + "a" + std::string(n, '*'),
      std::string(n, '['),
      std::string(n, '_') + "a",
      repeat("](", n),
      repeat("[a](", n),
      repeat("[a](http://x(", n),
      repeat("*a _b ", n) + repeat(" c* d_", n),
      repeat("`", n / 2) + "a",
      repeat("` `` ``` ```` ````` ", n),
      repeat("http://a/", n) + "javascript:",
      repeat("http://a.com/x_*(", n),
      repeat("a\n", n),
      repeat("```\n", n),
      repeat("\\*", n),
      repeat("\xff\xfe", n),
  };
  for (const std::string& in : inputs) {
    const std::string out = render_comment_markdown(in);
    EXPECT_EQ(test::check_allowlist(out), "") << in.substr(0, 40);
  }
}

// tests/server/xss_payloads.txt: one payload a line; '#' lines and empty lines skipped; escapes
// \xHH (a byte), \n, \r, \t, \\ (any other backslash is itself).
std::vector<std::string> load_payloads() {
  std::ifstream in(std::string(BLOCKLAB_SOURCE_DIR) + "/tests/server/xss_payloads.txt", std::ios::binary);
  std::vector<std::string> out;
  std::string line;
  auto hex = [](char c) { return std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (std::tolower(c) - 'a' + 10); };
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::string p;
    for (size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '\\' && i + 1 < line.size()) {
        const char e = line[i + 1];
        if (e == 'x' && i + 3 < line.size() && std::isxdigit(static_cast<unsigned char>(line[i + 2])) &&
            std::isxdigit(static_cast<unsigned char>(line[i + 3]))) {
          p += static_cast<char>(hex(line[i + 2]) * 16 + hex(line[i + 3]));
          i += 3;
          continue;
        }
        if (e == 'n' || e == 'r' || e == 't' || e == '\\') {
          p += e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : '\\';
          ++i;
          continue;
        }
      }
      p += line[i];
    }
    out.push_back(p);
  }
  return out;
}

TEST(Markdown, XssPayloadsRenderToAllowedHtml) {
  const std::vector<std::string> payloads = load_payloads();
  ASSERT_GE(payloads.size(), 80u);
  for (const std::string& p : payloads) {
    const std::string out = render_comment_markdown(p);
    EXPECT_EQ(test::check_allowlist(out), "") << "payload: " << p << "\noutput: " << out;
    const std::string low = lower(out);
    for (const char* bad : {"<script", "<img", "<svg", "<iframe", "<style", "<math", "<!--", "<![cdata", "<textarea"})
      EXPECT_EQ(low.find(bad), std::string::npos) << bad << " in the rendering of " << p;
    EXPECT_EQ(low.find("href=\"javascript"), std::string::npos) << p;
  }
}

TEST(HtmlAllowlist, PassesTheRenderersConstructs) {
  EXPECT_EQ(test::check_allowlist("<p>a<br>\n<em>b</em><strong>c</strong><code>d</code>" + a("https://x", "e") +
                                  "&lt;&gt;&amp;&quot;&#39;</p>\n<pre><code class=\"language-c++\">x\n</code></pre>"),
            "");
}

TEST(HtmlAllowlist, RefusesWhatIsNotAllowed) {
  const std::vector<std::string> bad = {
      "<script>alert(1)</script>",
      "<p onclick=\"x\">a</p>",
      "<img src=x onerror=alert(1)>",
      "<a href=\"javascript:alert(1)\"" + kRel + ">x</a>",
      "<a href=\"http://a\"" + kRel + " onclick=\"x\">x</a>",
      "<a href=\"http://a/&quot; onclick=&quot;x\"" + kRel + ">x</a>",
      "<a href=\"http://a/?u=javascript:x\"" + kRel + ">x</a>",
      "<a href=\"//evil\"" + kRel + ">x</a>",
      "<a href=\"http://a\">x</a>",
      "<a href=\"http://a\" rel=\"opener\">x</a>",
      "<a href='http://a'" + kRel + ">x</a>",
      "<code class=\"x\">a</code>",
      "<p><p>a</p></p>",
      "<em>a",
      "a</em>",
      "<em><strong>a</em></strong>",
      a("http://a", a("http://b", "x")),
      "a & b",
      "a > b",
      "say \"hi\"",
      "<!-- x -->",
      "<P>a</P>",
      "<p >a</p>",
      "a\x01",
      "a\xff",
      "<pre>a</pre>",
  };
  for (const std::string& html : bad) EXPECT_NE(test::check_allowlist(html), "") << html;
}

}  // namespace
}  // namespace blocklab::server
