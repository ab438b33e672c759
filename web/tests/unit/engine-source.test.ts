import path from 'node:path';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ENGINE_EXCERPTS, extractBetweenMarkers, readEngineExcerpts } from '../../plugins/engine-source';

const repo = path.resolve(__dirname, '../../..');

describe('engine source extraction (build time)', () => {
  it('extracts the lines between the markers with their line numbers', () => {
    const text = 'a\n// [web:x begin] note\nline 1\nline 2\n// [web:x end]\nb';
    expect(extractBetweenMarkers(text, 'x', 'f.cpp')).toEqual({ name: 'x', file: 'f.cpp', firstLine: 3, lastLine: 4, code: 'line 1\nline 2' });
  });
  it('fails loudly on a missing, repeated, reversed or empty marker', () => {
    expect(() => extractBetweenMarkers('x', 'x', 'f.cpp')).toThrow(/f\.cpp.*begin marker is missing/);
    expect(() => extractBetweenMarkers('// [web:x begin]\ny', 'x', 'f.cpp')).toThrow(/end marker is missing/);
    expect(() => extractBetweenMarkers('// [web:x begin]\n// [web:x begin]\n// [web:x end]', 'x', 'f.cpp')).toThrow(/one begin and one end/);
    expect(() => extractBetweenMarkers('// [web:x end]\n// [web:x begin]', 'x', 'f.cpp')).toThrow(/comes before/);
    expect(() => extractBetweenMarkers('// [web:x begin]\n  \n// [web:x end]', 'x', 'f.cpp')).toThrow(/no code/);
    expect(() => readEngineExcerpts('/nonexistent')).toThrow(/cannot read/);
  });
  it('finds the three excerpts in the engine, verbatim', () => {
    const ex = readEngineExcerpts(repo);
    expect(ex.map((e) => e.name)).toEqual(ENGINE_EXCERPTS.map((e) => e.name));
    for (const e of ex) {
      const lines = readFileSync(path.join(repo, e.file), 'utf8').split('\n');
      expect(lines.slice(e.firstLine - 1, e.lastLine).join('\n')).toBe(e.code);
    }
    expect(ex[0].code).toContain('ffn_sublayer_forward');
    expect(ex[1].code).toContain('linear_forward');
    expect(ex[2].code).toContain('activation_forward');
  });
});
