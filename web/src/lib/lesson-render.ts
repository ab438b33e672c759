// The lessons' Markdown subset (docs/lessons.md) as HTML, for the lesson sections and the assistant's answers:
// paragraphs, "- " bullet lists, **bold**, *emphasis*, `code`, app links [text](?page=…), inline maths $…$ and
// display maths $$ … $$ (KaTeX, as components/Katex.svelte typesets it). Everything else is text: every character
// of the source reaches the page escaped, and the only markup is what this file writes (and KaTeX's, which
// escapes its input; `trust` stays off, so \href, \url, \html… are refused). A link to anything but the app
// (`?page=…`) stays text.
import katex from 'katex';

const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESC[c]);
}

/** An app link's target: `?page=<id>` with an optional query and `#anchor`, nothing else. */
export const APP_LINK_RE = /^\?page=[a-z0-9-]+(?:&[^\s#<>"'`]*)?(?:#[a-z0-9-]+)?$/;

const mathCache = new Map<string, string>();

/** KaTeX's HTML for `tex` (remembered: a streamed answer renders the same formulas again at every piece). */
export function renderMath(tex: string, display: boolean): string {
  const key = (display ? 'D' : 'I') + tex;
  let html = mathCache.get(key);
  if (html === undefined) {
    html = katex.renderToString(tex, { throwOnError: false, displayMode: display, output: 'htmlAndMathml', trust: false, strict: 'ignore', maxSize: 20, maxExpand: 200 });
    if (mathCache.size > 500) mathCache.clear();
    mathCache.set(key, html);
  }
  return html;
}

const mathSpan = (tex: string, display: boolean) =>
  display ? `<span class="katex-host display">${renderMath(tex, true)}</span>` : `<span class="katex-host">${renderMath(tex, false)}</span>`;

const isSpace = (c: string | undefined) => c === undefined || /\s/.test(c);

/** Where the inline maths opened at `i` (a single `$`) closes, or -1: `$` then a non-space, up to a `$` after a
 * non-space that no digit follows ("costs $5 and $6" stays text). */
function mathEnd(s: string, i: number): number {
  if (isSpace(s[i + 1]) || s[i + 1] === '$') return -1;
  for (let j = i + 1; j < s.length; j++) {
    if (s[j] === '\\') {
      j++;
      continue;
    }
    if (s[j] === '$') return !isSpace(s[j - 1]) && !/[0-9]/.test(s[j + 1] ?? '') ? j : -1;
  }
  return -1;
}

/** Where emphasis opened at `i` by `mark` (`*` or `**`) closes, or -1: not next to a space inside. */
function emphasisEnd(s: string, i: number, mark: string): number {
  const from = i + mark.length;
  if (isSpace(s[from])) return -1;
  for (let j = s.indexOf(mark, from + 1); j !== -1; j = s.indexOf(mark, j + 1)) {
    if (mark === '*' && (s[j + 1] === '*' || s[j - 1] === '*')) continue;
    if (!isSpace(s[j - 1])) return j;
  }
  return -1;
}

/** One paragraph's or item's text (lines joined) as HTML. */
export function renderInline(s: string, links = true): string {
  let out = '';
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === '\\' && i + 1 < s.length && '\\`*$[]()_#-'.includes(s[i + 1])) {
      out += escapeHtml(s[i + 1]);
      i += 2;
      continue;
    }
    if (c === '`') {
      const j = s.indexOf('`', i + 1);
      if (j > i + 1) {
        out += `<code>${escapeHtml(s.slice(i + 1, j))}</code>`;
        i = j + 1;
        continue;
      }
    }
    if (c === '$' && s[i + 1] === '$') {
      const j = s.indexOf('$$', i + 2);
      if (j > i + 2) {
        out += mathSpan(s.slice(i + 2, j).trim(), true);
        i = j + 2;
        continue;
      }
    } else if (c === '$') {
      const j = mathEnd(s, i);
      if (j > 0) {
        out += mathSpan(s.slice(i + 1, j), false);
        i = j + 1;
        continue;
      }
    }
    if (c === '*') {
      const mark = s[i + 1] === '*' ? '**' : '*';
      const j = emphasisEnd(s, i, mark);
      if (j > 0) {
        const tag = mark === '**' ? 'strong' : 'em';
        out += `<${tag}>${renderInline(s.slice(i + mark.length, j), links)}</${tag}>`;
        i = j + mark.length;
        continue;
      }
    }
    if (c === '[' && links) {
      const m = /^\[([^\]\n]+)\]\(([^)\s]+)\)/.exec(s.slice(i));
      if (m && APP_LINK_RE.test(m[2])) {
        out += `<a href="${escapeHtml(m[2])}" data-app-link="">${renderInline(m[1], false)}</a>`;
        i += m[0].length;
        continue;
      }
    }
    out += escapeHtml(c);
    i++;
  }
  return out;
}

type Block = { kind: 'p'; text: string } | { kind: 'ul'; items: string[] } | { kind: 'math'; tex: string } | { kind: 'raw'; text: string };

/** Splits the source into paragraphs, lists and display maths. */
export function blocks(src: string): Block[] {
  const lines = src.replace(/\r\n?/g, '\n').split('\n');
  const out: Block[] = [];
  let para: string[] = [];
  let list: string[] | null = null;
  const flush = () => {
    if (para.length) out.push({ kind: 'p', text: para.join('\n') });
    para = [];
  };
  const endList = () => {
    if (list) out.push({ kind: 'ul', items: list });
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const t = line.trim();
    if (t === '$$') {
      flush();
      endList();
      const end = lines.findIndex((l, k) => k > i && l.trim() === '$$');
      if (end < 0) {
        // unterminated (an answer still streaming): its text as it is
        out.push({ kind: 'raw', text: lines.slice(i).join('\n') });
        break;
      }
      out.push({ kind: 'math', tex: lines.slice(i + 1, end).join('\n') });
      i = end;
      continue;
    }
    if (t.length > 4 && t.startsWith('$$') && t.endsWith('$$') && !t.slice(2, -2).includes('$$')) {
      flush();
      endList();
      out.push({ kind: 'math', tex: t.slice(2, -2).trim() });
      continue;
    }
    if (t === '') {
      flush();
      continue;
    }
    const item = /^\s{0,3}- (.*)$/.exec(line);
    if (item) {
      flush();
      (list ??= []).push(item[1]);
      continue;
    }
    if (list && para.length === 0 && lines[i - 1]?.trim() !== '') {
      // an item's continuation line (indented or not, as CommonMark's lazy continuation)
      list[list.length - 1] += '\n' + t;
      continue;
    }
    endList();
    para.push(line);
  }
  flush();
  endList();
  return out;
}

/** The whole Markdown subset as HTML (see the top of this file). */
export function renderMarkdown(src: string): string {
  return blocks(src)
    .map((b) => {
      switch (b.kind) {
        case 'p':
          return `<p>${renderInline(b.text)}</p>`;
        case 'ul':
          return `<ul>${b.items.map((it) => `<li>${renderInline(it)}</li>`).join('')}</ul>`;
        case 'math':
          return `<div class="katex-host display">${renderMath(b.tex, true)}</div>`;
        case 'raw':
          return `<p class="raw">${escapeHtml(b.text)}</p>`;
      }
    })
    .join('\n');
}
