// A Vite plugin that exposes the engine's own FFN source to the app as the virtual module
// `virtual:engine-source`, extracted from the C++ tree at build time between marker comments:
//
//   // [web:NAME begin] (optional note)
//   ...code...
//   // [web:NAME end]
//
// A missing, repeated, unterminated or empty marker fails the build with a message naming the file and the
// marker: the FFN page never shows hand-pasted code.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Plugin } from 'vite';

export interface SourceExcerpt {
  /** the marker's name, e.g. "ffn-forward" */
  name: string;
  /** the file, relative to the repository root */
  file: string;
  /** 1-based line numbers of the first and last line of code (the markers excluded) */
  firstLine: number;
  lastLine: number;
  code: string;
}

/** The excerpts the FFN page shows, in reading order. */
export const ENGINE_EXCERPTS: ReadonlyArray<{ name: string; file: string }> = [
  { name: 'ffn-forward', file: 'src/engine/model.cpp' },
  { name: 'linear-forward', file: 'src/engine/kernels.cpp' },
  { name: 'activation-forward', file: 'src/engine/kernels.cpp' },
];

const VIRTUAL_ID = 'virtual:engine-source';
const RESOLVED_ID = '\0' + VIRTUAL_ID;

/** Extracts the lines strictly between `// [web:NAME begin]` and `// [web:NAME end]`; throws naming what is wrong. */
export function extractBetweenMarkers(text: string, name: string, file: string): SourceExcerpt {
  const lines = text.split(/\r?\n/);
  const isMarker = (line: string, which: 'begin' | 'end') =>
    line.trim().startsWith(`// [web:${name} ${which}]`);
  const begins = lines.flatMap((l, i) => (isMarker(l, 'begin') ? [i] : []));
  const ends = lines.flatMap((l, i) => (isMarker(l, 'end') ? [i] : []));
  const where = `${file}: marker "// [web:${name} begin]" … "// [web:${name} end]"`;
  if (begins.length === 0) throw new Error(`${where}: the begin marker is missing`);
  if (ends.length === 0) throw new Error(`${where}: the end marker is missing`);
  if (begins.length > 1 || ends.length > 1)
    throw new Error(`${where}: expected one begin and one end marker, got ${begins.length} and ${ends.length}`);
  const [b] = begins;
  const [e] = ends;
  if (e <= b) throw new Error(`${where}: the end marker (line ${e + 1}) comes before the begin marker (line ${b + 1})`);
  const code = lines.slice(b + 1, e).join('\n');
  if (code.trim() === '') throw new Error(`${where}: no code between the markers`);
  return { name, file, firstLine: b + 2, lastLine: e, code };
}

/** Reads every excerpt from the repository at `repoRoot`; throws on the first problem. */
export function readEngineExcerpts(repoRoot: string): SourceExcerpt[] {
  return ENGINE_EXCERPTS.map(({ name, file }) => {
    const full = path.join(repoRoot, file);
    let text: string;
    try {
      text = readFileSync(full, 'utf8');
    } catch (err) {
      throw new Error(`${file}: cannot read the engine source for marker "${name}" (${(err as Error).message})`);
    }
    return extractBetweenMarkers(text, name, file);
  });
}

export function engineSource(repoRoot: string): Plugin {
  return {
    name: 'blocklab-engine-source',
    buildStart() {
      // Fail loudly and early, before anything is bundled.
      readEngineExcerpts(repoRoot);
      for (const { file } of ENGINE_EXCERPTS) this.addWatchFile(path.join(repoRoot, file));
    },
    resolveId(id) {
      return id === VIRTUAL_ID ? RESOLVED_ID : null;
    },
    load(id) {
      if (id !== RESOLVED_ID) return null;
      const excerpts = readEngineExcerpts(repoRoot);
      return `export default ${JSON.stringify(excerpts)};\n`;
    },
  };
}
