// Comments (issue 12) are plain text with a small Markdown subset, rendered on the server into HTML
// that is safe to insert into a page as is. A pure function: no I/O, no state, no exceptions but
// std::bad_alloc.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace blocklab::server {

// Emphasis and strong nest at most this deep; delimiters beyond it are left as text.
inline constexpr int kMarkdownMaxEmphasisDepth = 8;

// Renders a comment's text as sanitized HTML.
//
// Input: any bytes. Invalid UTF-8 (overlong forms, surrogates, code points above U+10FFFF, truncated
// or stray bytes) becomes U+FFFD, one per offending byte; NUL, the other C0 controls but \t and \n,
// and DEL are dropped; \r\n and a lone \r become \n.
//
// Blocks: paragraphs are separated by blank lines (only spaces or tabs); in a paragraph, each line
// is trimmed and a single newline becomes <br>. A fenced code block opens with a line of three or
// more backticks (leading spaces or tabs allowed) and an optional single word, and closes with a
// line of at least as many backticks, or at the end of the text; its lines are kept verbatim,
// each followed by \n, in <pre><code>…</code></pre>. The word becomes class="language-WORD" only if,
// lower-cased, it matches [a-z0-9+-]{1,20}; otherwise it is dropped.
//
// Inline: `code` (a run of N backticks up to the next run of exactly N; newlines become spaces, and
// one space on each side is stripped when both are there) → <code>; *em* or _em_ → <em>; **strong**
// or __strong__ → <strong> (CommonMark's flanking rules; '_' not inside words), nested at most
// kMarkdownMaxEmphasisDepth deep; [text](url) and bare http:// or https:// URLs (at a word boundary;
// trailing . , : ; ! ? * _ ~ and an unbalanced ')' are not part of one) → <a href="url"
// rel="nofollow noopener noreferrer">. A backslash before one of \ ` * _ [ ] ( ) makes it literal.
// Links do not nest: a bare URL inside a link's text is text.
//
// A URL becomes a link only if it consists of [A-Za-z0-9-._~:/?#@!$&()*+,;=%] (no quotes, spaces,
// angle brackets or backslashes), begins with http:// or https:// (any case; the scheme is written
// lower-case) followed by a letter or digit, and, after decoding HTML character references and
// percent-escapes, removing whitespace and control characters and lower-casing, still begins with
// http:// or https://; and if neither as written nor so decoded (both lower-cased) it contains
// "javascript:", "vbscript:" or an "on<letters>=" that does not follow a letter or digit. Anything else (javascript:, data:, vbscript:, file:,
// //host, relative) stays as text.
//
// Output: only the tags p, br, em, strong, code, pre and a; only the attributes href and rel (on a)
// and class (on code, language-* only), always double-quoted. Every <, >, &, " and ' of the input
// is written as &lt; &gt; &amp; &quot; &#39;, in text, in code and in href; no HTML of the input
// passes through. Blocks are separated by \n; an empty or blank text gives "". Time and memory are
// linear in the size of the text, whatever its nesting.
std::string render_comment_markdown(std::string_view text);

}  // namespace blocklab::server
