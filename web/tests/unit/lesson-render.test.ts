// The lessons' Markdown subset as HTML (src/lib/lesson-render.ts): everything escaped, the subset's markup only,
// app links only, KaTeX for the maths; and the Lesson component rendered alone.
import { describe, expect, it, vi } from 'vitest';
import { render } from 'svelte/server';
import { blocks, escapeHtml, renderInline, renderMarkdown } from '../../src/lib/lesson-render';
import Lesson from '../../src/components/Lesson.svelte';
import lessons from 'virtual:lessons';

// The component's navigation (app-state, navigate.svelte.ts) reads the URL when imported: a URL for it.
vi.hoisted(() => {
  const g = globalThis as Record<string, unknown>;
  g.location ??= new URL('http://app.invalid/?page=layernorm');
  g.history ??= { pushState() {}, replaceState() {} };
  g.addEventListener ??= () => {};
});

/** The tags in an HTML string, KaTeX's own left out (its spans and MathML). */
function tags(html: string): string[] {
  const noKatex = html.replace(/<span class="katex-host[^"]*">[\s\S]*?<\/annotation><\/semantics><\/math><\/span>[\s\S]*?<\/span><\/span>/g, '');
  return [...noKatex.matchAll(/<\/?([a-zA-Z][a-zA-Z0-9-]*)/g)].map((m) => m[1].toLowerCase());
}

describe('lesson text: escaping', () => {
  it('escapes every character HTML could read as markup', () => {
    expect(escapeHtml(`<a href="x" onclick='y'>&</a>`)).toBe('&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;');
  });

  it('a <script>, an <img onerror>, an <iframe> are text', () => {
    const html = renderMarkdown('Hi <script>alert(1)</script> and <img src=x onerror=alert(1)>\n\n- <iframe src="javascript:alert(1)">');
    expect(html).not.toMatch(/<script|<img|<iframe/i);
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(tags(html)).toEqual(['p', 'p', 'ul', 'li', 'li', 'ul']);
  });

  it('inside code, bold, emphasis and list items too', () => {
    const html = renderMarkdown('`<b>` **<i>x</i>** *<u>y</u>*\n- <s>z</s>');
    expect(tags(html)).toEqual(['p', 'code', 'code', 'strong', 'strong', 'em', 'em', 'p', 'ul', 'li', 'li', 'ul']);
    expect(html).toContain('<code>&lt;b&gt;</code>');
  });

  it('maths cannot carry markup or links: KaTeX escapes it, \\href and \\htmlClass are refused', () => {
    const html = renderMarkdown('$<script>$ and $\\href{javascript:alert(1)}{x}$ and $\\htmlClass{a}{b}$\n\n$$\n</div><script>alert(1)</script>\n$$');
    expect(html).not.toMatch(/<script|href="javascript/i);
    expect(html).not.toContain('class="a"');
  });
});

describe('lesson text: the Markdown subset', () => {
  it('paragraphs split at blank lines; lines of one paragraph join', () => {
    expect(renderMarkdown('one\ntwo\n\nthree')).toBe('<p>one\ntwo</p>\n<p>three</p>');
  });

  it('bold, emphasis, code; a lone star or a spaced one is text', () => {
    expect(renderInline('**b** and *e* and `c*d*`')).toBe('<strong>b</strong> and <em>e</em> and <code>c*d*</code>');
    expect(renderInline('**bold with *em* inside**')).toBe('<strong>bold with <em>em</em> inside</strong>');
    expect(renderInline('2 * 3 * 4 and a*')).toBe('2 * 3 * 4 and a*');
    expect(renderInline('\\*not em\\*')).toBe('*not em*');
  });

  it('bullet lists, with continuation lines, apart from the paragraphs around them', () => {
    expect(blocks('Intro:\n- a\n- b\n  more b\n\nAfter.')).toEqual([
      { kind: 'p', text: 'Intro:' },
      { kind: 'ul', items: ['a', 'b\nmore b'] },
      { kind: 'p', text: 'After.' },
    ]);
    expect(renderMarkdown('- **x**: $y$')).toMatch(/^<ul><li><strong>x<\/strong>: <span class="katex-host"><span class="katex">/);
  });

  it('inline and display maths through KaTeX; dollars that are prices stay text', () => {
    const inline = renderInline('mean $\\mu = \\tfrac1d \\sum_i x_i$ here');
    expect(inline).toMatch(/^mean <span class="katex-host"><span class="katex"><span class="katex-mathml"><math/);
    expect(inline).toContain('<annotation encoding="application/x-tex">\\mu = \\tfrac1d \\sum_i x_i</annotation>');
    expect(renderInline('it costs $5 and $6 today')).toBe('it costs $5 and $6 today');
    expect(renderInline('a $ b $ c')).toBe('a $ b $ c');
    const display = renderMarkdown('Before.\n\n$$\n\\mathrm{LN}(x)_i = \\gamma_i \\hat x_i + \\beta_i\n$$\n\nAfter.');
    expect(display).toMatch(/^<p>Before\.<\/p>\n<div class="katex-host display"><span class="katex-display">/);
    expect(display).toMatch(/<\/div>\n<p>After\.<\/p>$/);
    expect(renderMarkdown('$$x^2$$')).toMatch(/^<div class="katex-host display">/);
  });

  it('an unterminated $$ (an answer still streaming) is shown as text', () => {
    const html = renderMarkdown('So:\n\n$$\n\\frac{a}{');
    expect(html).toBe('<p>So:</p>\n<p class="raw">$$\n\\frac{a}{</p>');
  });

  it('app links become links the app follows; any other link stays text', () => {
    expect(renderInline('see [the FFN page](?page=ffn&act=relu#activation)')).toBe(
      'see <a href="?page=ffn&amp;act=relu#activation" data-app-link="">the FFN page</a>',
    );
    expect(renderInline('[**bold** link](?page=layernorm)')).toBe('<a href="?page=layernorm" data-app-link=""><strong>bold</strong> link</a>');
    for (const bad of ['[x](https://evil.example)', '[x](javascript:alert(1))', '[x](//evil.example/?page=ffn)', '[x](?page=ffn"onmouseover="alert(1))'])
      expect(renderInline(bad), bad).not.toContain('<a');
  });
});

describe('Lesson component, rendered alone', () => {
  it('one section by id: its anchor, heading, test id and body', () => {
    const page = Object.values(lessons)[0];
    const s = page.sections[0];
    const { body } = render(Lesson, { props: { page: page.page, id: s.id } });
    expect(body).toContain(`id="${s.id}"`);
    expect(body).toContain(`data-testid="lesson-${page.page}-${s.id}"`);
    expect(body).toContain(`data-kind="${s.kind}"`);
    expect(body).toContain(`>${escapeHtml(s.title)}</h2>`);
    expect((body.match(/<section/g) ?? []).length).toBe(1);
  });

  it('every section of a kind (or of several), in file order', () => {
    for (const page of Object.values(lessons)) {
      const kinds = ['misunderstanding', 'intuition'] as const;
      const want = page.sections.filter((s) => (kinds as readonly string[]).includes(s.kind)).map((s) => s.id);
      const { body } = render(Lesson, { props: { page: page.page, kind: [...kinds] } });
      expect([...body.matchAll(/<section[^>]* id="([a-z0-9-]+)"/g)].map((m) => m[1])).toEqual(want);
    }
  });
});
