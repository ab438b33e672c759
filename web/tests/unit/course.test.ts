// The course path (lib/course.ts): the pages in order, the steps of one block in either placement with their
// formulas and the trace names of their rows, the step kept across a placement switch, and the "what to notice"
// line worked out from the vectors it is given. The vectors here are small made-up inputs (the page's are the
// engine's); the expected lengths and angles are worked out by hand.
import { describe, expect, it } from 'vitest';
import katex from 'katex';
import { COURSE, coursePlace, courseSteps, notice, noticeText, stepIndexIn } from '../../src/lib/course';
import { PAGES } from '../../src/lib/pages';
import { fmt } from '../../src/lib/format';
import type { TrackerStep } from '../../src/lib/api';
import { cosine, norm } from '../../src/lib/vec';

const cfg = { placement: 'pre' as 'pre' | 'post', norm: 'layernorm' as 'layernorm' | 'rmsnorm' | 'none', residual: true, residual_alpha: 1, activation: 'gelu_tanh' as 'relu' | 'gelu' | 'gelu_tanh', n_heads: 2, d_ff: 4, d_model: 3 };

/** A block's tracker in the engine's order for `placement` (block 0), with 3 features, 2 heads, 3 tokens. */
function tracker(placement: 'pre' | 'post', block = 0): TrackerStep[] {
  const x = [3, 0, 4]; // ‖x‖ = 5
  const f1 = [0, 1, 0];
  const mid = [3, 1, 4];
  const ln = (name: string, before: number[], after: number[]): TrackerStep => ({ block, component: 'layernorm', name, before, after, mean: 7 / 3, rstd: 0.61, normalized: after });
  const attn = (before: number[]): TrackerStep => ({ block, component: 'attention', name: 'attention', before, after: f1, pattern: [[0.2, 0.3, 0.5], [0.1, 0.8, 0.1]] });
  const add = (name: string, before: number[], inc: number[], after: number[]): TrackerStep => ({ block, component: 'residual', name, before, after, increment: inc, alpha: 1, residual: true });
  const ffn = (before: number[]): TrackerStep => ({ block, component: 'ffn', name: 'ffn', before, after: [0, 0, -2], hidden: { pre: [0.5, -1, 2, 0], post: [0.35, -0.16, 1.95, 0] } });
  const out = [3, 1, 2];
  return placement === 'pre'
    ? [ln('ln1', x, [0.5, -1.2, 0.7]), attn([0.5, -1.2, 0.7]), add('residual 1', x, f1, mid), ln('ln2', mid, [0.1, -1.3, 1.2]), ffn([0.1, -1.3, 1.2]), add('residual 2', mid, [0, 0, -2], out)]
    : [attn(x), add('residual 1', x, f1, mid), ln('ln1', mid, [0.1, -1.3, 1.2]), ffn([0.1, -1.3, 1.2]), add('residual 2', [0.1, -1.3, 1.2], [0, 0, -2], [0.1, -1.3, -0.8]), ln('ln2', [0.1, -1.3, -0.8], [0.9, -1.4, 0.5])];
}

describe('the course path', () => {
  it('runs through every page in the nav’s order: the overview first, the cheat sheet last', () => {
    expect(COURSE).toEqual(Object.keys(PAGES));
    expect(COURSE[0]).toBe('course');
    expect(COURSE.at(-1)).toBe('cheatsheet');
    expect(new Set(COURSE).size).toBe(COURSE.length);
  });
  it('each page’s previous and next', () => {
    expect(coursePlace('course')).toEqual({ index: 0, prev: null, next: COURSE[1] });
    expect(coursePlace(COURSE[3])).toEqual({ index: 3, prev: COURSE[2], next: COURSE[4] });
    expect(coursePlace('cheatsheet')).toEqual({ index: COURSE.length - 1, prev: COURSE.at(-2), next: null });
    // following "next" from the first page visits every page once
    const seen = ['course'];
    for (let p = coursePlace('course').next; p; p = coursePlace(p).next) seen.push(p);
    expect(seen).toEqual(COURSE);
  });
});

describe('the steps of one block', () => {
  it('pre: norm → attention → add → norm → FFN → add, each row named by its trace activation', () => {
    const s = courseSteps(tracker('pre'), 0, cfg);
    expect(s.map((x) => x.id)).toEqual(['ln1', 'attention', 'residual 1', 'ln2', 'ffn', 'residual 2']);
    expect(s.map((x) => x.label)).toEqual(['LayerNorm 1', 'Self-attention', 'Add', 'LayerNorm 2', 'FFN', 'Add']);
    expect(s.map((x) => x.rows.map((r) => `${r.id}=${r.trace}`))).toEqual([
      ['before=blocks.0.hook_resid_pre', 'after=blocks.0.ln1.hook_out'],
      ['before=blocks.0.ln1.hook_out', 'after=blocks.0.hook_attn_out'],
      ['before=blocks.0.hook_resid_pre', 'update=blocks.0.hook_attn_out', 'after=blocks.0.hook_resid_mid'],
      ['before=blocks.0.hook_resid_mid', 'after=blocks.0.ln2.hook_out'],
      ['before=blocks.0.ln2.hook_out', 'after=blocks.0.hook_mlp_out'],
      ['before=blocks.0.hook_resid_mid', 'update=blocks.0.hook_mlp_out', 'after=blocks.0.hook_resid_post'],
    ]);
    // the rows are the tracker's vectors, as given
    expect(s[2].rows.map((r) => r.values)).toEqual([[3, 0, 4], [0, 1, 0], [3, 1, 4]]);
    expect(s[0].tex).toContain('h_1 = \\mathrm{LN}_1(x)');
    expect(s[1].tex).toContain('f_1 = \\mathrm{Attn}(h_1)');
    expect(s[2].tex).toBe('\\mathrm{mid} = x + \\alpha\\, f_1');
    expect(s[4].tex).toContain('f_2 = \\mathrm{FFN}(h_2) = \\mathrm{GELU}_{\\tanh}');
    expect(s[5].tex).toBe('\\mathrm{out} = \\mathrm{mid} + \\alpha\\, f_2');
    expect(s[0].rows[1].label).toBe('h₁ — the normalised copy attention reads');
  });
  it('post: attention → add → norm → FFN → add → norm; the norms write the stream', () => {
    const s = courseSteps(tracker('post'), 0, { ...cfg, placement: 'post' });
    expect(s.map((x) => x.id)).toEqual(['attention', 'residual 1', 'ln1', 'ffn', 'residual 2', 'ln2']);
    expect(s.map((x) => x.rows.map((r) => r.trace).join(' → '))).toEqual([
      'blocks.0.hook_resid_pre → blocks.0.hook_attn_out',
      'blocks.0.hook_resid_pre → blocks.0.hook_attn_out → blocks.0.hook_sum1',
      'blocks.0.hook_sum1 → blocks.0.hook_resid_mid',
      'blocks.0.hook_resid_mid → blocks.0.hook_mlp_out',
      'blocks.0.hook_resid_mid → blocks.0.hook_mlp_out → blocks.0.hook_sum2',
      'blocks.0.hook_sum2 → blocks.0.hook_resid_post',
    ]);
    expect(s[2].tex).toContain('\\mathrm{mid} = \\mathrm{LN}_1(s_1)');
    expect(s[5].tex).toContain('\\mathrm{out} = \\mathrm{LN}_2(s_2)');
    expect(s[0].tex).toContain('f_1 = \\mathrm{Attn}(x)');
  });
  it('only the chosen block; RMSNorm, no residual and ReLU in the formulas; every formula typesets', () => {
    const both = [...tracker('pre', 0), ...tracker('pre', 1)];
    const s1 = courseSteps(both, 1, cfg);
    expect(s1).toHaveLength(6);
    expect(s1[0].rows[0].trace).toBe('blocks.1.hook_resid_pre');
    expect(courseSteps(both, 2, cfg)).toEqual([]);
    const rms = courseSteps(tracker('pre'), 0, { ...cfg, norm: 'rmsnorm', residual: false, activation: 'relu' });
    expect(rms[0].tex).toContain('\\mathrm{RMSNorm}_1(x)');
    expect(rms[0].tex).not.toContain('\\mu');
    expect(rms[2].tex).toContain('\\mathrm{mid} = f_1');
    expect(rms[4].tex).toContain('\\mathrm{ReLU}');
    for (const c of [cfg, { ...cfg, placement: 'post' as const }, { ...cfg, norm: 'rmsnorm' as const, residual: false }])
      for (const st of courseSteps(tracker(c.placement), 0, c)) expect(() => katex.renderToString(st.tex, { throwOnError: true })).not.toThrow();
  });
  it('a placement switch keeps the step of the same name', () => {
    expect(stepIndexIn(cfg, 'post', 'ffn')).toBe(3);
    expect(stepIndexIn(cfg, 'pre', 'ffn')).toBe(4);
    expect(stepIndexIn(cfg, 'post', 'ln1')).toBe(2);
    expect(stepIndexIn(cfg, 'post', 'attention')).toBe(0);
    expect(stepIndexIn({ ...cfg, norm: 'none' }, 'post', 'ln1')).toBe(0);
  });
});

describe('what to notice', () => {
  const chars = [...'abc'];
  const text = (i: number, c = cfg) => noticeText(notice(courseSteps(tracker(c.placement), 0, c)[i], c, chars), (v) => fmt(v, 3));
  it('an add: the lengths before and after, the update’s, and the angle', () => {
    // ‖(3,0,4)‖ = 5, ‖(3,1,4)‖ = √26, ‖f‖ = 1, cos = 25 / (5 √26)
    expect(text(2)).toBe(`‖·‖ went from 5.0 to ${fmt(Math.sqrt(26), 3)} after the add: the update α·f (‖α·f‖ = 1.0) is added, the input is kept: cos(input, output) = ${fmt(25 / (5 * Math.sqrt(26)), 3)}.`);
  });
  it('a norm: pre rescales a copy, post normalises the stream; μ and 1/rstd', () => {
    expect(text(0)).toBe(`The norm rescales a copy: ‖·‖ went from 5.0 to ${fmt(norm([0.5, -1.2, 0.7]), 3)} (its mean μ = 2.33 taken away, divided by √(σ² + ε) = ${fmt(1 / 0.61, 3)}, then γ and β). The stream itself goes on to the add untouched.`);
    expect(text(2, { ...cfg, placement: 'post' })).toMatch(/^The sum is normalised and becomes the stream: ‖·‖ went from 5\.1 to /);
  });
  it('attention: the strongest weight of any head, with the token it reads', () => {
    expect(text(1)).toBe(`Attention brings in the other tokens: its update f has ‖f‖ = 1.0 (its input: ${fmt(norm([0.5, -1.2, 0.7]), 3)}); the strongest weight is head 1's on token 1 “b”: 0.8.`);
  });
  it('the FFN: positive pre-activations counted, the strongest unit after the activation', () => {
    expect(text(4)).toBe(`The FFN works on this token alone: 2 of 4 hidden units have a positive pre-activation, the strongest is unit 2 (1.95 after the activation); its update has ‖f‖ = 2.0 (its input: ${fmt(norm([0.1, -1.3, 1.2]), 3)}).`);
  });
  it('no residual: the output is the update alone', () => {
    const c = { ...cfg, residual: false };
    expect(text(2, c)).toMatch(/^No residual: the output is f alone \(‖f‖ = 1\.0\); the input \(‖·‖ = 5\.0\) is dropped/);
  });
  it('its numbers carry formulas naming what they are', () => {
    const parts = notice(courseSteps(tracker('pre'), 0, cfg)[2], cfg, chars);
    const nums = parts.filter((p) => typeof p !== 'string') as { value: number; formula: string }[];
    expect(nums.map((n) => n.value)).toEqual([5, Math.sqrt(26), 1, cosine([3, 0, 4], [3, 1, 4])]);
    expect(nums[0].formula).toContain('blocks.0.hook_resid_pre');
    expect(nums[1].formula).toContain('blocks.0.hook_resid_mid');
  });
});
