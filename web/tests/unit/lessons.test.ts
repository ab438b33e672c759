// The lessons' parser (web/plugins/lessons.ts): the format of docs/lessons.md, every malformed case failing with
// the file, the line and what is wrong; and the real lessons/ files.
import path from 'node:path';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LessonError, parseLesson, readLessons, widgetProblem } from '../../plugins/lessons';
import { LESSON_KINDS } from '../../src/lib/lessons';
import { PAGES } from '../../src/lib/pages';

const repo = path.resolve(__dirname, '../../..');
const F = 'lessons/layernorm.md';

const GOOD = `---
page: layernorm
title: LayerNorm, step by step
suggest: What does LayerNorm compute?
suggest: Why not BatchNorm?
---

## Why normalise at all {#why}
widget: layernorm?tab=mean
keywords: layer norm, LN , microphone,, scale
kind: intuition

A paragraph. Inline maths as $\\mu = \\tfrac1d \\sum_i x_i$, **bold**, *emphasis*, \`code\`,
[a link](?page=ffn).

$$
\\mathrm{LN}(x)_i = \\gamma_i \\frac{x_i - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta_i
$$

- a bullet
- another bullet


## The steps {#step-by-step}

Defaults: no metadata at all.
`;

/** The problem a malformed text is refused with: its line and its words. */
function refusal(text: string, file = F): { line: number; message: string } {
  try {
    parseLesson(text, file);
  } catch (e) {
    expect(e).toBeInstanceOf(LessonError);
    const err = e as LessonError;
    expect(err.message).toBe(`${file}:${err.line}: ${err.problem}`);
    return { line: err.line, message: err.problem };
  }
  throw new Error('parsed without a complaint');
}
const section = (head: string, meta = '', body = 'Text.') => `---\npage: layernorm\ntitle: T\n---\n\n${head}\n${meta}${meta ? '\n' : ''}\n${body}\n`;

describe('lessons: parsing', () => {
  it('reads the front matter, the sections, their metadata and bodies', () => {
    const l = parseLesson(GOOD, F);
    expect(l.page).toBe('layernorm');
    expect(l.title).toBe('LayerNorm, step by step');
    expect(l.suggest).toEqual(['What does LayerNorm compute?', 'Why not BatchNorm?']);
    expect(l.sections.map((s) => s.id)).toEqual(['why', 'step-by-step']);
    const [why, steps] = l.sections;
    expect(why).toMatchObject({ title: 'Why normalise at all', widget: 'layernorm?tab=mean', kind: 'intuition' });
    expect(why.keywords).toEqual(['layer norm', 'LN', 'microphone', 'scale']);
    // the body as written, without the blank lines around it
    expect(why.body.startsWith('A paragraph. Inline maths as $\\mu')).toBe(true);
    expect(why.body.endsWith('- another bullet')).toBe(true);
    expect(why.body.split('\n')).toHaveLength(9);
    expect(steps).toEqual({ id: 'step-by-step', title: 'The steps', widget: '', keywords: [], kind: 'intuition', body: 'Defaults: no metadata at all.' });
  });

  it('takes CRLF line ends and a byte-order mark', () => {
    const l = parseLesson('\uFEFF' + GOOD.replaceAll('\n', '\r\n'), F);
    expect(l).toEqual(parseLesson(GOOD, F));
  });

  it('keeps a heading-like line inside display maths as maths', () => {
    const l = parseLesson(section('## A {#a}', '', '$$\n## not a heading\n$$'), F);
    expect(l.sections).toHaveLength(1);
    expect(l.sections[0].body).toBe('$$\n## not a heading\n$$');
  });

  it('checks a widget state against the page’s URL fields', () => {
    expect(widgetProblem('layernorm')).toBeNull();
    expect(widgetProblem('layernorm?tab=affine&gamma=2&x=5,5.001,4.999')).toBeNull();
    expect(widgetProblem('other-half?comp=residual&sub=ffn')).toBeNull();
    expect(widgetProblem('nowhere')).toMatch(/unknown page "nowhere"/);
    expect(widgetProblem('layernorm?colour=red')).toMatch(/no state "colour"/);
    expect(widgetProblem('layernorm?tab=sideways')).toMatch(/"tab=sideways" is not a value/);
    expect(widgetProblem('?page=layernorm')).toMatch(/not a page id/);
  });
});

describe('lessons: every malformed file fails, naming the file, the line and the problem', () => {
  it('front matter: missing, unterminated, unknown key, missing or repeated page/title, empty value', () => {
    expect(refusal('## A {#a}\n\nText.\n')).toEqual({ line: 1, message: expect.stringMatching(/missing front matter/) });
    expect(refusal('---\npage: layernorm\ntitle: T\n')).toEqual({ line: 1, message: expect.stringMatching(/unterminated front matter/) });
    expect(refusal('---\npage: layernorm\ntitle: T\nauthor: me\n---\n')).toEqual({ line: 4, message: expect.stringMatching(/unknown front-matter key "author"/) });
    expect(refusal('---\ntitle: T\n---\n')).toEqual({ line: 3, message: expect.stringMatching(/"page:" is missing/) });
    expect(refusal('---\npage: layernorm\n---\n')).toEqual({ line: 3, message: expect.stringMatching(/"title:" is missing/) });
    expect(refusal('---\npage: layernorm\npage: layernorm\ntitle: T\n---\n')).toEqual({ line: 3, message: expect.stringMatching(/"page:" given twice/) });
    expect(refusal('---\npage: layernorm\ntitle:\n---\n')).toEqual({ line: 3, message: expect.stringMatching(/"title:" is empty/) });
    expect(refusal('---\npage: layernorm\njust words\n---\n')).toEqual({ line: 3, message: expect.stringMatching(/expected "key: value"/) });
  });

  it('the page is not the file’s name, or not a page of the app', () => {
    expect(refusal(GOOD, 'lessons/ffn.md')).toEqual({ line: 6, message: 'front matter: page "layernorm" is not the file\'s name (expected "page: ffn")' });
    expect(refusal(GOOD.replace('page: layernorm', 'page: colours'), 'lessons/colours.md').message).toMatch(/"colours" is not a page of the app/);
  });

  it('a heading without an id, a bad id, a duplicate id, no title', () => {
    expect(refusal(section('## Why'))).toEqual({ line: 6, message: 'section heading without an id: write "## Why {#some-id}"' });
    expect(refusal(section('## Why {#Why_Not}'))).toEqual({ line: 6, message: expect.stringMatching(/bad section id "Why_Not"/) });
    expect(refusal(section('## Why {#}')).message).toMatch(/bad section id ""/);
    expect(refusal(section('## {#why}')).message).toMatch(/section "why" has no title/);
    const dup = GOOD.replace('{#step-by-step}', '{#why}');
    expect(refusal(dup)).toEqual({ line: 24, message: 'duplicate section id "why" (first on line 8)' });
  });

  it('unknown kind, unknown or repeated metadata key, a widget the page does not have', () => {
    expect(refusal(section('## A {#a}', 'kind: story'))).toEqual({ line: 7, message: expect.stringMatching(/unknown kind "story" \(kinds: intuition, maths/) });
    expect(refusal(section('## A {#a}', 'widget: ffn\ncolour: red'))).toEqual({ line: 8, message: expect.stringMatching(/unknown metadata key "colour"/) });
    expect(refusal(section('## A {#a}', 'kind: maths\nkind: maths')).message).toMatch(/"kind:" given twice/);
    expect(refusal(section('## A {#a}', 'widget: layernorm?tab=nope'))).toEqual({ line: 7, message: expect.stringMatching(/^widget: "tab=nope" is not a value/) });
    expect(refusal(section('## A {#a}', 'widget: atlantis')).message).toMatch(/widget: unknown page "atlantis"/);
  });

  it('unterminated $$, text before the first section, other headings, links outside the app, empty sections', () => {
    expect(refusal(section('## A {#a}', '', 'Text.\n\n$$\nx^2\n\n## B {#b}\n\nMore.'))).toEqual({ line: 10, message: expect.stringMatching(/unterminated display maths/) });
    expect(refusal(section('## A {#a}', '', '$$\nx^2'))).toEqual({ line: 8, message: expect.stringMatching(/unterminated display maths/) });
    expect(refusal('---\npage: layernorm\ntitle: T\n---\nStray words.\n## A {#a}\n\nText.\n')).toEqual({ line: 5, message: expect.stringMatching(/text before the first section/) });
    expect(refusal(section('## A {#a}', '', '### A sub-heading\n\nText.'))).toEqual({ line: 8, message: expect.stringMatching(/only level-2 headings/) });
    expect(refusal(section('## A {#a}', '', 'See [this](https://example.com).'))).toEqual({ line: 8, message: expect.stringMatching(/not an app link/) });
    expect(refusal(section('## A {#a}', '', 'See [this](?page=nowhere).')).message).toMatch(/unknown page "nowhere"/);
    expect(refusal(section('## A {#a}', '', 'See [this](?page=ffn#Bad_Id).')).message).toMatch(/not a section id/);
    expect(refusal('---\npage: layernorm\ntitle: T\n---\n\n## A {#a}\nkind: maths\n\n## B {#b}\n\nText.\n')).toEqual({ line: 6, message: 'section "a" has no text' });
    expect(refusal('---\npage: layernorm\ntitle: T\n---\n\n')).toEqual({ line: 4, message: expect.stringMatching(/no sections/) });
  });

  it('a missing lessons folder, or a page without its file', () => {
    expect(() => readLessons('/nonexistent')).toThrow(/lessons\/: cannot read the lessons folder/);
  });
});

describe('lessons: the real files (lessons/*.md)', () => {
  const all = readLessons(repo);

  it('has one file per page of the app, each named after its page', () => {
    expect(Object.keys(all).sort()).toEqual(Object.keys(PAGES).sort());
    const files = readdirSync(path.join(repo, 'lessons')).filter((f) => f.endsWith('.md'));
    for (const f of files) expect(all[f.replace(/\.md$/, '')].page).toBe(f.replace(/\.md$/, ''));
  });

  it('every section has a known kind, a title and text', () => {
    for (const l of Object.values(all))
      for (const s of l.sections) {
        expect(LESSON_KINDS).toContain(s.kind);
        expect(s.title).not.toBe('');
        expect(s.body.trim()).not.toBe('');
      }
  });

  it('every section a page names by id, and every comment section, exists', () => {
    const pagesDir = path.join(repo, 'web/src/pages');
    for (const f of readdirSync(pagesDir)) {
      const src = readFileSync(path.join(pagesDir, f), 'utf8');
      for (const m of src.matchAll(/<Lesson page="([a-z-]+)" id="([a-z0-9-]+)"/g)) expect(all[m[1]].sections.map((s) => s.id), `${f}: ${m[1]}#${m[2]}`).toContain(m[2]);
      for (const m of src.matchAll(/<Comments section="([a-z-]+)#([a-z0-9-]+)"/g)) expect(all[m[1]].sections.map((s) => s.id), `${f}: comments ${m[1]}#${m[2]}`).toContain(m[2]);
    }
  });

  it('every page places every kind of section somewhere (a citation always finds its section)', () => {
    const pagesDir = path.join(repo, 'web/src/pages');
    for (const f of readdirSync(pagesDir)) {
      const src = readFileSync(path.join(pagesDir, f), 'utf8');
      const placed = new Set([...src.matchAll(/<Lesson page="[a-z-]+" kind=\{?\[?([^}/]*)\]?\}? \/>/g)].flatMap((m) => [...m[1].matchAll(/'?"?([a-z]+)'?"?/g)].map((k) => k[1])));
      const byId = [...src.matchAll(/<Lesson page="[a-z-]+" id=/g)].length > 0;
      for (const k of LESSON_KINDS) if (!(byId && k === 'widget')) expect([...placed], `${f} places no "${k}" section`).toContain(k);
    }
  });
});
