// A Vite plugin that exposes the lessons' text (lessons/<page>.md at the repository root, format in
// docs/lessons.md) to the app as the virtual module `virtual:lessons`:
//
//   {[page]: {page, title, suggest: string[], sections: [{id, title, widget, keywords: string[], kind, body}]}}
//
// The same files are compiled into the engine's binary for the learning assistant (src/assistant/lessons.cpp);
// tests/unit/lessons-parity.test.ts checks that both parsers read them alike. A malformed file fails the build
// with `lessons/<file>:<line>: what is wrong`: missing or unterminated front matter, a page that is not the file's
// name, an unknown front-matter or metadata key, a section heading without `{#id}`, a bad or repeated id, an
// unknown kind, a widget state the page does not have, a link that is not an app link, an unterminated `$$`.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Plugin, ViteDevServer } from 'vite';
import { PAGES } from '../src/lib/pages.ts';
import { parseField, type Schema } from '../src/lib/state.ts';
import { LESSON_KINDS, type LessonKind, type LessonPage, type LessonSection, type Lessons } from '../src/lib/lessons.ts';

export type { LessonPage, LessonSection, Lessons } from '../src/lib/lessons.ts';

const VIRTUAL_ID = 'virtual:lessons';
const RESOLVED_ID = '\0' + VIRTUAL_ID;

/** A problem in a lesson file, said as `file:line: message`. */
export class LessonError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly problem: string,
  ) {
    super(`${file}:${line}: ${problem}`);
    this.name = 'LessonError';
  }
}

const ID_RE = /^[a-z0-9-]+$/;
const FRONT_KEYS = ['page', 'title', 'suggest'] as const;
const META_KEYS = ['widget', 'keywords', 'kind'] as const;
/** `key: value` (a metadata or front-matter line) */
const KEY_LINE = /^([A-Za-z][A-Za-z0-9_-]*):(?:\s+(.*)|\s*)$/;
const HEADING = /^##\s+(.*)$/;
const OTHER_HEADING = /^(#|###+)\s/;
const ANCHOR = /^(.*?)\s*\{#([^}]*)\}\s*$/;

const pages = PAGES as unknown as Record<string, Schema>;

/**
 * Checks an app state written as `page?key=value&…` (a section's `widget:`, a link's `?page=…`): the page exists,
 * and every key is one of its URL fields with a value it can read. Returns the problem, or null.
 */
export function widgetProblem(widget: string): string | null {
  const m = /^([a-z0-9-]+)(?:\?(.*))?$/.exec(widget);
  if (!m) return `"${widget}" is not a page id with an optional ?query`;
  const schema = pages[m[1]];
  if (!schema) return `unknown page "${m[1]}" (pages: ${Object.keys(pages).join(', ')})`;
  if (m[2] === undefined) return null;
  for (const [k, v] of new URLSearchParams(m[2])) {
    const f = schema[k];
    if (!f) return `the page "${m[1]}" has no state "${k}" (it has: ${Object.keys(schema).join(', ')})`;
    if (parseField(f, v) === null) return `"${k}=${v}" is not a value the page "${m[1]}" can read`;
  }
  return null;
}

/** Checks a body line's links: `[text](?page=…)` only (app links), to a page's state that exists. */
function linkProblem(line: string): string | null {
  for (const m of line.matchAll(/\[([^\]]*)\]\(([^)]*)\)/g)) {
    const url = m[2].trim();
    if (!url.startsWith('?page=')) return `the link "${m[0]}" is not an app link [text](?page=…)`;
    const [query, hash] = url.slice('?page='.length).split('#', 2);
    const problem = widgetProblem(query.replace('&', '?'));
    if (problem) return `the link "${m[0]}": ${problem}`;
    if (hash !== undefined && !ID_RE.test(hash)) return `the link "${m[0]}": "#${hash}" is not a section id`;
  }
  return null;
}

/**
 * Parses one lesson file. `file` is its name as messages say it (`lessons/layernorm.md`); the page must equal the
 * file's base name. Throws a LessonError naming the line on the first problem.
 */
export function parseLesson(text: string, file: string): LessonPage {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const fail = (line: number, problem: string): never => {
    throw new LessonError(file, line, problem);
  };
  const expectedPage = path.basename(file).replace(/\.md$/, '');

  // ---- front matter ----
  if (lines[0]?.trim() !== '---') fail(1, 'missing front matter: the file must start with a line "---", then page: and title:, then "---"');
  let i = 1;
  let page: string | null = null;
  let title: string | null = null;
  const suggest: string[] = [];
  for (; ; i++) {
    if (i >= lines.length) fail(1, 'unterminated front matter: no closing "---"');
    const raw = lines[i];
    if (raw.trim() === '---') break;
    if (raw.trim() === '') continue;
    const m = KEY_LINE.exec(raw.trim());
    if (!m) fail(i + 1, `front matter: expected "key: value", got "${raw}"`);
    const [, key, value = ''] = m!;
    const v = value.trim();
    if (!(FRONT_KEYS as readonly string[]).includes(key)) fail(i + 1, `unknown front-matter key "${key}" (known: ${FRONT_KEYS.join(', ')})`);
    if (v === '') fail(i + 1, `front matter: "${key}:" is empty`);
    if (key === 'page') {
      if (page !== null) fail(i + 1, 'front matter: "page:" given twice');
      page = v;
    } else if (key === 'title') {
      if (title !== null) fail(i + 1, 'front matter: "title:" given twice');
      title = v;
    } else suggest.push(v);
  }
  const frontEnd = i + 1; // 1-based line of the closing ---
  if (page === null) fail(frontEnd, 'front matter: "page:" is missing');
  if (title === null) fail(frontEnd, 'front matter: "title:" is missing');
  if (page !== expectedPage) fail(frontEnd, `front matter: page "${page}" is not the file's name (expected "page: ${expectedPage}")`);
  if (!pages[page!]) fail(frontEnd, `front matter: "${page}" is not a page of the app (pages: ${Object.keys(pages).join(', ')})`);

  // ---- sections ----
  const sections: LessonSection[] = [];
  const firstLineOf = new Map<string, number>();
  let cur: { s: LessonSection; line: number; body: string[]; mathOpen: number | null } | null = null;
  const close = () => {
    if (!cur) return;
    if (cur.mathOpen !== null) fail(cur.mathOpen, 'unterminated display maths: "$$" opened here is never closed');
    const body = cur.body;
    while (body.length && body[0].trim() === '') body.shift();
    while (body.length && body[body.length - 1].trim() === '') body.pop();
    if (body.length === 0) fail(cur.line, `section "${cur.s.id}" has no text`);
    cur.s.body = body.join('\n');
    sections.push(cur.s);
    cur = null;
  };
  for (i = frontEnd; i < lines.length; i++) {
    const raw = lines[i];
    const n = i + 1;
    const h = cur?.mathOpen == null ? HEADING.exec(raw) : null;
    if (h) {
      close();
      const a = ANCHOR.exec(h[1]);
      if (!a) fail(n, `section heading without an id: write "## ${h[1].trim()} {#some-id}"`);
      const [, t, id] = a!;
      if (!ID_RE.test(id)) fail(n, `bad section id "${id}": use lower-case letters, digits and "-" only`);
      if (t.trim() === '') fail(n, `section "${id}" has no title`);
      const first = firstLineOf.get(id);
      if (first !== undefined) fail(n, `duplicate section id "${id}" (first on line ${first})`);
      firstLineOf.set(id, n);
      const s: LessonSection = { id, title: t.trim(), widget: '', keywords: [], kind: 'intuition', body: '' };
      // metadata: `key: value` lines right under the heading, up to the first line that is not one
      const seen = new Set<string>();
      let j = i + 1;
      for (; j < lines.length; j++) {
        const m = KEY_LINE.exec(lines[j]);
        if (!m) break;
        const [, key, value = ''] = m;
        const v = value.trim();
        if (!(META_KEYS as readonly string[]).includes(key))
          fail(j + 1, `unknown metadata key "${key}" (known: ${META_KEYS.join(', ')}; leave a blank line between the metadata and the text)`);
        if (seen.has(key)) fail(j + 1, `metadata "${key}:" given twice`);
        seen.add(key);
        if (key === 'widget') {
          const problem = widgetProblem(v);
          if (problem) fail(j + 1, `widget: ${problem}`);
          s.widget = v;
        } else if (key === 'keywords') {
          s.keywords = v.split(',').map((k) => k.trim()).filter((k) => k !== '');
        } else {
          if (!(LESSON_KINDS as readonly string[]).includes(v)) fail(j + 1, `unknown kind "${v}" (kinds: ${LESSON_KINDS.join(', ')})`);
          s.kind = v as LessonKind;
        }
      }
      cur = { s, line: n, body: [], mathOpen: null };
      i = j - 1;
      continue;
    }
    if (!cur) {
      if (raw.trim() !== '') fail(n, 'text before the first section (a section starts with "## Title {#id}")');
      continue;
    }
    const c = cur as { s: LessonSection; line: number; body: string[]; mathOpen: number | null };
    if (raw.trim() === '$$') c.mathOpen = c.mathOpen === null ? n : null;
    else if (c.mathOpen === null) {
      if (OTHER_HEADING.test(raw)) fail(n, 'only level-2 headings start sections ("## Title {#id}"); other headings are not part of the lesson format');
      const problem = linkProblem(raw);
      if (problem) fail(n, problem);
    }
    c.body.push(raw);
  }
  close();
  if (sections.length === 0) fail(frontEnd, 'no sections (each starts with "## Title {#id}")');
  return { page: page!, title: title!, suggest, sections };
}

/** Reads every `lessons/*.md` of the repository at `repoRoot`; throws on the first problem. Every page needs one. */
export function readLessons(repoRoot: string): Lessons {
  const dir = path.join(repoRoot, 'lessons');
  let names: string[];
  try {
    names = readdirSync(dir).filter((f) => f.endsWith('.md')).sort();
  } catch (err) {
    throw new Error(`lessons/: cannot read the lessons folder (${(err as Error).message})`);
  }
  const out: Lessons = {};
  for (const name of names) {
    const lesson = parseLesson(readFileSync(path.join(dir, name), 'utf8'), `lessons/${name}`);
    out[lesson.page] = lesson;
  }
  const missing = Object.keys(pages).filter((p) => !out[p]);
  if (missing.length) throw new Error(`lessons/: no lesson file for ${missing.map((p) => `${p} (lessons/${p}.md)`).join(', ')}`);
  return out;
}

export function lessons(repoRoot: string): Plugin {
  const dir = path.join(repoRoot, 'lessons');
  return {
    name: 'blocklab-lessons',
    buildStart() {
      // Fail loudly and early, before anything is bundled.
      readLessons(repoRoot);
      this.addWatchFile(dir);
      for (const f of readdirSync(dir)) if (f.endsWith('.md')) this.addWatchFile(path.join(dir, f));
    },
    resolveId(id) {
      return id === VIRTUAL_ID ? RESOLVED_ID : null;
    },
    load(id) {
      if (id !== RESOLVED_ID) return null;
      return `export default ${JSON.stringify(readLessons(repoRoot))};\n`;
    },
    configureServer(server: ViteDevServer) {
      // `npm run dev`: an edited lesson reloads the page (a malformed one shows the error overlay).
      server.watcher.add(dir);
      server.watcher.on('all', (_event, file) => {
        if (!file.startsWith(dir + path.sep) || !file.endsWith('.md')) return;
        const mod = server.moduleGraph.getModuleById(RESOLVED_ID);
        if (mod) server.moduleGraph.invalidateModule(mod);
        server.ws.send({ type: 'full-reload' });
      });
    },
  };
}
