import { describe, expect, it } from 'vitest';
import { editDistance, editTable, fillOrder, norm, recurrenceTraceNames, residualSteps, reuse, subscripts, unrolled, wordProblem, WORD_MAX } from '../../src/lib/dp';

describe('edit distance (the analogy, computed in TypeScript)', () => {
  it('matches known distances', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('flaw', 'lawn')).toBe(2);
    expect(editDistance('intention', 'execution')).toBe(5);
    expect(editDistance('sunday', 'saturday')).toBe(3);
    expect(editDistance('book', 'back')).toBe(2);
    expect(editDistance('abc', 'abc')).toBe(0);
    expect(editDistance('a', 'b')).toBe(1);
    expect(editDistance('abc', 'cba')).toBe(2);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('abc', '')).toBe(3);
  });

  it('the table: base row and column, and is symmetric in its words', () => {
    const d = editTable('kitten', 'sitting');
    expect(d.length).toBe(7);
    expect(d[0]).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(d.map((r) => r[0])).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(d[1][1]).toBe(1); // k → s
    expect(d[2][2]).toBe(1); // "ki" → "si"
    const e = editTable('sitting', 'kitten');
    for (let i = 0; i < d.length; i++) for (let j = 0; j < d[0].length; j++) expect(e[j][i]).toBe(d[i][j]);
  });

  it('fills row by row and each cell reuses its three neighbours', () => {
    const order = fillOrder('ab', 'abc');
    expect(order).toEqual([{ i: 1, j: 1 }, { i: 1, j: 2 }, { i: 1, j: 3 }, { i: 2, j: 1 }, { i: 2, j: 2 }, { i: 2, j: 3 }]);
    const d = editTable('kitten', 'sitting');
    const r = reuse(d, 'kitten', 'sitting', 2, 2); // i = i: a match on the diagonal
    expect(r.reads.map((x) => x.cell)).toEqual([{ i: 1, j: 1 }, { i: 1, j: 2 }, { i: 2, j: 1 }]);
    expect(r.move).toBe('match');
    expect(r.chosen).toEqual({ i: 1, j: 1 });
    expect(r.value).toBe(d[2][2]);
    for (const { i, j } of fillOrder('kitten', 'sitting')) expect(reuse(d, 'kitten', 'sitting', i, j).value).toBe(d[i][j]);
    expect(reuse(editTable('a', 'ab'), 'a', 'ab', 1, 2).move).toBe('insert');
    expect(reuse(editTable('ab', 'a'), 'ab', 'a', 2, 1).move).toBe('delete');
    expect(reuse(editTable('a', 'b'), 'a', 'b', 1, 1).move).toBe('substitute');
  });

  it('refuses words that are empty, too long or not a–z', () => {
    expect(wordProblem('kitten')).toBeNull();
    expect(wordProblem('')).toMatch(/at least one/);
    expect(wordProblem('a'.repeat(WORD_MAX + 1))).toMatch(/at most 8/);
    expect(wordProblem('Kitten')).toMatch(/“K”/);
    expect(wordProblem('ki tten')).toMatch(/a–z/);
    expect(wordProblem('é')).toMatch(/“é”/);
  });
});

describe('the residual recurrence from a trace', () => {
  const trace: Record<string, number[][]> = {
    'blocks.0.hook_resid_pre': [[3, 4]],
    'blocks.0.hook_attn_out': [[1, 0]],
    'blocks.0.hook_resid_mid': [[4, 4]],
    'blocks.0.hook_mlp_out': [[0, -4]],
    'blocks.0.hook_resid_post': [[4, 0.5]],
  };
  it('one step per sub-layer, the norms and the gap', () => {
    const s = residualSteps(trace, 0, 1)!;
    expect(s.map((x) => x.label)).toEqual(['block 0, attention', 'block 0, FFN']);
    expect(s[0].normX).toBe(5);
    expect(s[0].normF).toBe(1);
    expect(s[0].gap).toBe(0);
    expect(s[1].normF).toBe(4);
    expect(s[1].normNext).toBeCloseTo(Math.hypot(4, 0.5));
    expect(s[1].gap).toBe(0.5);
    expect(residualSteps(trace, 0, 2)).toBeNull();
    expect(residualSteps(trace, 1, 1)).toBeNull();
    expect(norm([3, null, 4])).toBe(5);
    expect(recurrenceTraceNames(2)).toEqual(['blocks.0.hook_resid_', 'blocks.0.hook_attn_out', 'blocks.0.hook_mlp_out', 'blocks.1.hook_resid_', 'blocks.1.hook_attn_out', 'blocks.1.hook_mlp_out']);
  });
  it('unrolls the sum', () => {
    expect(unrolled(0)).toBe('x_0');
    expect(unrolled(3)).toBe('x_3 = x_0 + f_0 + f_1 + f_2');
    expect(subscripts(unrolled(3))).toBe('x₃ = x₀ + f₀ + f₁ + f₂');
    expect(subscripts('x_12, x_l, x_l+1')).toBe('x₁₂, xₗ, xₗ₊₁');
    expect(subscripts('hook_logits, hook_resid_pre')).toBe('hook_logits, hook_resid_pre');
  });
});
