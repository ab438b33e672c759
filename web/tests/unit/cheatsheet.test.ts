// The cheat sheet (lessons/cheatsheet.md, lib/cheatsheet.ts): every summary section is a row of the four cells in
// order, and its "See it" cell links to widgets that exist; a malformed row is refused with what is wrong.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readLessons, widgetProblem } from '../../plugins/lessons';
import { CHEAT_COLUMNS, cellLinks, cheatRow } from '../../src/lib/cheatsheet';

const repo = path.resolve(__dirname, '../../..');
const sheet = readLessons(repo).cheatsheet;
const rows = sheet.sections.filter((s) => s.kind === 'summary');

describe('the cheat sheet', () => {
  it('has the seed’s five rows, in its order', () => {
    expect(rows.map((s) => s.id)).toEqual(['residual', 'layernorm', 'pre-norm', 'ffn', 'memoization']);
  });
  it('every row has its four cells, and links to widgets that exist', () => {
    for (const s of rows) {
      const r = cheatRow(s);
      expect(r, s.id).toHaveProperty('cells');
      const cells = (r as { cells: string[] }).cells;
      expect(cells).toHaveLength(CHEAT_COLUMNS.length);
      const links = cellLinks(cells[3]);
      expect(links.length, s.id).toBeGreaterThan(0);
      for (const l of links) {
        const [query] = l.href.slice('?page='.length).split('#');
        expect(widgetProblem(query.replace('&', '?')), `${s.id}: ${l.href}`).toBeNull();
      }
    }
  });
  it('refuses a row that is not one list of the four labelled cells', () => {
    expect(cheatRow({ id: 'x', body: 'A paragraph.' })).toEqual({ problem: '#x: expected one list of 4 cells and nothing else, got p' });
    expect(cheatRow({ id: 'x', body: '- **Computes:** a\n- **For:** b' })).toEqual({ problem: '#x: expected 4 cells (Computes, For, Key property, See it), got 2' });
    expect(cheatRow({ id: 'x', body: '- **Computes:** a\n- **Purpose:** b\n- **Key property:** c\n- **See it:** [w](?page=ffn)' })).toEqual({
      problem: '#x: cell 2 must start with "**For:** ", got "**Purpose:** b"',
    });
    expect(cheatRow({ id: 'x', body: '- **Computes:** a\n- **For:** b\n- **Key property:** c\n- **See it:** the FFN page' })).toEqual({
      problem: '#x: "See it" links to no widget (write [text](?page=…))',
    });
    expect(cheatRow({ id: 'x', body: '- **Computes:** a\n- **For:** b\n- **Key property:** c\n- **See it:** [w](?page=ffn) · [v](?page=gradflow#dp-analogy)' })).toEqual({
      cells: ['a', 'b', 'c', '[w](?page=ffn) · [v](?page=gradflow#dp-analogy)'],
    });
  });
});
