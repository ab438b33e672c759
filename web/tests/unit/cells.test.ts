// The LayerNorm page's cells: blanks, the cell a refusal names, the words for a blank cell; blanks in the URL.
import { describe, expect, it } from 'vitest';
import { blankCells, cellOfField, cellWords } from '../../src/lib/cells';
import { PAGES } from '../../src/lib/pages';
import { formatValues, parseMatrix, parseValues, type Schema } from '../../src/lib/state';

describe('the LayerNorm page’s cells', () => {
  it('finds the blank cells and the cell a refusal names', () => {
    expect(blankCells([[1, null, 3], [null, 5, 6]])).toEqual([{ row: 0, col: 1 }, { row: 1, col: 0 }]);
    expect(blankCells([[1, 2]])).toEqual([]);
    expect(cellOfField('x[1][0]')).toEqual({ row: 1, col: 0 });
    expect(cellOfField('x')).toBeNull();
    expect(cellOfField('gamma[0]')).toBeNull();
    expect(cellOfField(null)).toBeNull();
  });

  it('says what is wrong with a cell', () => {
    expect(cellWords({ row: 1, col: 0 }, undefined)).toBe('token 2, x[0] is empty');
    expect(cellWords({ row: 0, col: 2 }, '1e400')).toBe('token 1, x[2] (“1e400”) is not a finite number');
    expect(cellWords({ row: 0, col: 2 }, '')).toBe('token 1, x[2] is not a finite number');
  });

  it('keeps a blank cell in the URL as a blank, not as a number (the x field only)', () => {
    const schema = PAGES.layernorm as Schema;
    expect(parseMatrix('0.1,,-1.2;5,5.1,4.9', 8, 8, true)).toEqual([[0.1, null, -1.2], [5, 5.1, 4.9]]);
    expect(parseMatrix('0.1,,-1.2', 8, 8)).toBeNull();
    expect(parseMatrix('0.1,abc', 8, 8, true)).toBeNull();
    const v = parseValues(schema, new URLSearchParams('x=0.1,,-1.2;5,5.1,4.9'));
    expect(v.x).toEqual([[0.1, null, -1.2], [5, 5.1, 4.9]]);
    expect(new URLSearchParams(formatValues('layernorm', schema, v).slice(1)).get('x')).toBe('0.1,,-1.2;5,5.1,4.9');
  });

  it('defaults to four tokens, the seed’s two first', () => {
    expect((PAGES.layernorm.x as { def: number[][] }).def).toEqual([
      [0.1, 2.3, -1.2],
      [5.0, 5.1, 4.9],
      [-0.5, 0.7, 1.9],
      [3.0, -2.0, 0.5],
    ]);
  });
});
