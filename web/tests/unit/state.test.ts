import { describe, expect, it } from 'vitest';
import { PAGES, effectivePos, type PageId } from '../../src/lib/pages';
import {
  coerce,
  defaults,
  formatMatrix,
  formatUrl,
  formatValues,
  parseMatrix,
  parseUrl,
  parseValues,
  type Field,
  type Schema,
  type Values,
} from '../../src/lib/state';

/** A deterministic non-default value for a field (for round trips). */
function other(f: Field, k: number): Values[string] {
  switch (f.kind) {
    case 'int':
      return f.def === f.max ? f.min : Math.min(f.max, f.def + 1 + (k % 3));
    case 'num':
      return f.def === f.max ? f.min : Math.min(f.max, f.def + 0.123456789 * (1 + (k % 2)));
    case 'enum':
      return f.values[(f.values.indexOf(f.def) + 1 + k) % f.values.length] === f.def
        ? f.values[(f.values.indexOf(f.def) + 1) % f.values.length]
        : f.values[(f.values.indexOf(f.def) + 1 + k) % f.values.length];
    case 'bool':
      return !f.def;
    case 'str':
      return `a&b=c d?é ${k}`;
    case 'matrix':
      return [
        [1.5, -2.25, 1e-7],
        [3, 4, 5],
      ];
  }
}

describe('URL state', () => {
  const pages = Object.keys(PAGES) as PageId[];

  it('every page opens with its defaults from a bare URL, and the first page from nothing', () => {
    // the first page is the course's overview (lib/course.ts)
    expect(parseUrl(PAGES, '').page).toBe('course');
    expect(parseUrl(PAGES, '?page=nope').page).toBe('course');
    for (const p of pages) {
      const s = parseUrl(PAGES, `?page=${p}`);
      expect(s.page).toBe(p);
      expect(s.values).toEqual(defaults(PAGES[p] as Schema));
      expect(formatUrl(PAGES, s)).toBe(`?page=${p}`);
    }
  });

  it('round-trips every field of every page through the URL', () => {
    for (const p of pages) {
      const schema = PAGES[p] as Schema;
      Object.keys(schema).forEach((key, k) => {
        const values = { ...defaults(schema), [key]: other(schema[key], k) };
        const url = formatUrl(PAGES, { page: p, values });
        expect(url).toContain(`${encodeURIComponent(key)}=`);
        expect(parseUrl(PAGES, url)).toEqual({ page: p, values });
      });
      // all fields changed at once
      const all = Object.fromEntries(Object.entries(schema).map(([key, f], k) => [key, other(f, k)]));
      expect(parseUrl(PAGES, formatUrl(PAGES, { page: p, values: all }))).toEqual({ page: p, values: all });
    }
  });

  it('leaves defaults out of the URL', () => {
    const schema = PAGES.layernorm as Schema;
    const values = { ...defaults(schema), tab: 'variance' };
    expect(formatValues('layernorm', schema, values)).toBe('?page=layernorm&tab=variance');
  });

  it('falls back to the default for unreadable values and clamps numbers', () => {
    const schema = PAGES.gradflow as Schema;
    const v = parseValues(schema, new URLSearchParams('layers=500&residual=maybe&norm=batchnorm&seed=x1'));
    expect(v.layers).toBe(100);
    expect(v.residual).toBe(true);
    expect(v.norm).toBe('layernorm');
    expect(v.seed).toBe(0);
    expect(parseValues(schema, new URLSearchParams('layers=-3')).layers).toBe(1);
    expect(parseValues(schema, new URLSearchParams('layers=2.5')).layers).toBe(24);
    expect(parseValues(schema, new URLSearchParams('residual=0')).residual).toBe(false);
    expect(parseValues(PAGES.layernorm as Schema, new URLSearchParams('eps=abc&gamma=')).eps).toBe(1e-5);
  });

  it('reads and writes matrices, refusing ragged or non-finite ones', () => {
    expect(parseMatrix('0.1,2.3,-1.2;5,5.1,4.9', 8, 8)).toEqual([
      [0.1, 2.3, -1.2],
      [5, 5.1, 4.9],
    ]);
    expect(formatMatrix([[0.1, 2.3, -1.2]])).toBe('0.1,2.3,-1.2');
    expect(parseMatrix('1,2;3', 8, 8)).toBeNull();
    expect(parseMatrix('1,,2', 8, 8)).toBeNull();
    expect(parseMatrix('1,Infinity', 8, 8)).toBeNull();
    expect(parseMatrix('1;2;3', 2, 8)).toBeNull();
    const schema = PAGES.layernorm as Schema;
    expect(parseValues(schema, new URLSearchParams('x=1,2;3')).x).toEqual(defaults(schema).x);
  });

  it('coerces control values into range', () => {
    const s = PAGES['other-half'] as Schema;
    expect(coerce(s.alpha, 7)).toBe(2);
    expect(coerce(s.alpha, NaN)).toBe(1);
    expect(coerce(s.comp, 'attention')).toBe('residual');
    expect(coerce(s.block, 1.6)).toBe(2);
    expect(coerce(s.text, 'x'.repeat(100))).toHaveLength(64);
  });

  it('picks the last token for pos −1 or out of range', () => {
    expect(effectivePos(-1, 20)).toBe(19);
    expect(effectivePos(25, 20)).toBe(19);
    expect(effectivePos(3, 20)).toBe(3);
  });
});
