// The course path (lessons/course.md): the pages in order with a "next" link on each, and the overview page's
// walk of one token through one block, step by step, in the placement's order. Every vector is the engine's (the
// tracker of POST /api/compute/block); what is taken here are the lengths, the angle and the counts the "what to
// notice" line says, from the numbers the page draws.
import type { ModelConfig, TrackerStep } from './api';
import { blockDiagram } from './blockdiagram';
import { topIndices } from './chart';
import { PAGES, type PageId } from './pages';
import { cosine, norm } from './vec';

/** The pages in the course's order: PAGES' order (the overview first, the cheat sheet last). */
export const COURSE = Object.keys(PAGES) as PageId[];

/** Where a page sits in the course: its 0-based place, and the pages before and after it (null at the ends). */
export function coursePlace(page: PageId): { index: number; prev: PageId | null; next: PageId | null } {
  const index = COURSE.indexOf(page);
  return { index, prev: index > 0 ? COURSE[index - 1] : null, next: index >= 0 && index < COURSE.length - 1 ? COURSE[index + 1] : null };
}

type Cfg = Pick<ModelConfig, 'placement' | 'norm' | 'residual' | 'residual_alpha' | 'activation' | 'n_heads' | 'd_ff' | 'd_model'>;

/** One step of the block as the overview shows it: the tracker's step with what its vectors are. */
export interface CourseStep {
  /** 0-based place in the block, in the placement's order */
  index: number;
  /** the tracker's step name (ln1, attention, residual 1, ln2, ffn, residual 2) */
  id: string;
  kind: TrackerStep['component'];
  /** the block diagram's name for it ("LayerNorm 1", "Self-attention", "Add", "FFN") */
  label: string;
  /** what the step computes, in KaTeX */
  tex: string;
  /** the rows drawn: the vector before, the update added (add steps), the vector after */
  rows: CourseRow[];
  step: TrackerStep;
}

export interface CourseRow {
  id: 'before' | 'update' | 'after';
  /** its symbol and what it is: "x — the stream entering the block" */
  label: string;
  values: (number | null)[];
  /** the engine's activation this row is a row of (docs/trace.md): the tooltip names it */
  trace: string;
}

const NORM_TEX = { layernorm: 'LN', rmsnorm: 'RMSNorm' } as const;
const ACT_TEX: Record<string, string> = { relu: '\\mathrm{ReLU}', gelu: '\\mathrm{GELU}', gelu_tanh: '\\mathrm{GELU}_{\\tanh}' };

/**
 * The symbols of the block's quantities in one placement, each with the trace name it is (block `b`):
 *   pre : x → h₁ = N₁(x) → f₁ = Attn(h₁) → mid = x + α f₁ → h₂ = N₂(mid) → f₂ = FFN(h₂) → out = mid + α f₂
 *   post: x → f₁ = Attn(x) → s₁ = x + α f₁ → mid = N₁(s₁) → f₂ = FFN(mid) → s₂ = mid + α f₂ → out = N₂(s₂)
 * Without a norm there are no h or s: the sub-layers read x and mid.
 */
function symbols(c: Cfg, b: number) {
  const p = `blocks.${b}.`;
  const hasNorm = c.norm !== 'none';
  const x = { tex: 'x', words: 'the stream entering the block', trace: `${p}hook_resid_pre` };
  const mid = { tex: '\\mathrm{mid}', words: 'the stream between the sub-layers', trace: `${p}hook_resid_mid` };
  const out = { tex: '\\mathrm{out}', words: 'the block’s output, the stream leaving it', trace: `${p}hook_resid_post` };
  const f1 = { tex: 'f_1', words: 'attention’s update', trace: `${p}hook_attn_out` };
  const f2 = { tex: 'f_2', words: 'the FFN’s update', trace: `${p}hook_mlp_out` };
  if (c.placement === 'pre') {
    const h1 = hasNorm ? { tex: 'h_1', words: 'the normalised copy attention reads', trace: `${p}ln1.hook_out` } : x;
    const h2 = hasNorm ? { tex: 'h_2', words: 'the normalised copy the FFN reads', trace: `${p}ln2.hook_out` } : mid;
    return { x, mid, out, f1, f2, h1, h2, s1: mid, s2: out, attnIn: h1, ffnIn: h2 };
  }
  const s1 = hasNorm ? { tex: 's_1', words: 'the sum, before the norm', trace: `${p}hook_sum1` } : mid;
  const s2 = hasNorm ? { tex: 's_2', words: 'the sum, before the norm', trace: `${p}hook_sum2` } : out;
  return { x, mid, out, f1, f2, h1: x, h2: mid, s1, s2, attnIn: x, ffnIn: mid };
}

type Sym = { tex: string; words: string; trace: string };
const plain = (tex: string) =>
  tex
    .replace(/\\mathrm\{([^}]*)\}/g, '$1')
    .replace(/_1/g, '₁')
    .replace(/_2/g, '₂');
const row = (id: CourseRow['id'], s: Sym, values: (number | null)[]): CourseRow => ({ id, label: `${plain(s.tex)} — ${s.words}`, values, trace: s.trace });

/** What one tracker step computes, and the rows it draws. */
function stepParts(c: Cfg, b: number, step: TrackerStep): { tex: string; rows: CourseRow[] } {
  const S = symbols(c, b);
  const normOf = (i: 1 | 2, arg: string) => `\\mathrm{${NORM_TEX[c.norm as 'layernorm' | 'rmsnorm']}}_${i}(${arg})`;
  const formula = (i: 1 | 2, arg: string) =>
    c.norm === 'rmsnorm'
      ? `\\gamma_${i} \\odot \\dfrac{${arg}}{\\sqrt{\\overline{${arg}^2} + \\epsilon}}`
      : `\\gamma_${i} \\odot \\dfrac{${arg} - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta_${i}`;
  const add = (to: Sym, from: Sym, f: Sym) => (c.residual ? `${to.tex} = ${from.tex} + \\alpha\\, ${f.tex}` : `${to.tex} = ${f.tex} \\quad \\text{(no residual: } ${from.tex} \\text{ is dropped)}`);
  const before = step.before;
  const after = step.after;
  switch (step.name) {
    case 'ln1':
    case 'ln2': {
      const i = step.name === 'ln1' ? 1 : 2;
      const [from, to] =
        c.placement === 'pre' ? (i === 1 ? [S.x, S.h1] : [S.mid, S.h2]) : i === 1 ? [S.s1, S.mid] : [S.s2, S.out];
      return { tex: `${to.tex} = ${normOf(i, from.tex)} = ${formula(i, from.tex)}`, rows: [row('before', from, before), row('after', to, after)] };
    }
    case 'attention':
      return {
        tex: `${S.f1.tex} = \\mathrm{Attn}(${S.attnIn.tex}) = \\Big[\\textstyle\\sum_j \\mathrm{softmax}_j\\big(q^{(k)} \\cdot k^{(k)}_j / \\sqrt{d_k}\\big)\\, v^{(k)}_j\\Big]_{k=1}^{${c.n_heads}}\\, W_O^\\top + b_O`,
        rows: [row('before', S.attnIn, before), row('after', S.f1, after)],
      };
    case 'ffn':
      return {
        tex: `${S.f2.tex} = \\mathrm{FFN}(${S.ffnIn.tex}) = ${ACT_TEX[c.activation] ?? '\\phi'}\\big(${S.ffnIn.tex} W_1^\\top + b_1\\big)\\, W_2^\\top + b_2`,
        rows: [row('before', S.ffnIn, before), row('after', S.f2, after)],
      };
    case 'residual 1':
    case 'residual 2': {
      const [from, f, to] = step.name === 'residual 1' ? [S.x, S.f1, S.s1] : [S.mid, S.f2, S.s2];
      return { tex: add(to, from, f), rows: [row('before', from, before), row('update', f, step.increment ?? []), row('after', to, after)] };
    }
    default:
      return { tex: '', rows: [row('before', S.x, before), row('after', S.out, after)] };
  }
}

/** The steps of block `block` in the answer's order (the placement's), each with its formula and rows. */
export function courseSteps(tracker: ReadonlyArray<TrackerStep>, block: number, c: Cfg): CourseStep[] {
  const labels = new Map(blockDiagram(c).nodes.map((n) => [n.id, n.label]));
  return tracker
    .filter((s) => s.block === block)
    .map((s, index) => ({ index, id: s.name, kind: s.component, label: labels.get(s.name) ?? s.name, ...stepParts(c, block, s), step: s }));
}

/** The place of step `id` in the other placement's order (the step kept when the placement is switched); 0 if it has none. */
export function stepIndexIn(c: Cfg, placement: 'pre' | 'post', id: string): number {
  const i = blockDiagram({ ...c, placement }).nodes.findIndex((n) => n.id === id);
  return Math.max(0, i);
}

/** A piece of the "what to notice" line: words, or a number with its formula (drawn as a Num). */
export type NoticePart = string | { value: number | null; formula: string };

/**
 * One line about the step, computed from the numbers drawn: how the length of the token's vector changed, what
 * was kept, the strongest attention weight, how many hidden units fired. `chars`: the sentence of the answer, to
 * name the token a head reads.
 */
export function notice(s: CourseStep, c: Pick<Cfg, 'placement' | 'norm' | 'residual'>, chars: readonly string[]): NoticePart[] {
  const st = s.step;
  const before = s.rows.find((r) => r.id === 'before')!;
  const after = s.rows.find((r) => r.id === 'after')!;
  const nb = { value: norm(before.values), formula: `‖·‖ = √(Σᵢ vᵢ²) of ${before.trace}, this token` };
  const na = { value: norm(after.values), formula: `‖·‖ = √(Σᵢ vᵢ²) of ${after.trace}, this token` };
  switch (s.kind) {
    case 'layernorm': {
      const scale = st.rstd ? 1 / st.rstd : null;
      const stats: NoticePart[] =
        c.norm === 'rmsnorm'
          ? ['divided by its rms √(mean(x²) + ε) = ', { value: scale, formula: '1 / rstd, the engine’s rstd of this token' }, ', then scaled by γ']
          : [
              'its mean μ = ',
              { value: st.mean ?? null, formula: 'μ = (1/d) Σᵢ xᵢ, the engine’s mean of this token' },
              ' taken away, divided by √(σ² + ε) = ',
              { value: scale, formula: '1 / rstd, the engine’s rstd of this token' },
              ', then γ and β',
            ];
      return c.placement === 'pre'
        ? ['The norm rescales a copy: ‖·‖ went from ', nb, ' to ', na, ' (', ...stats, '). The stream itself goes on to the add untouched.']
        : ['The sum is normalised and becomes the stream: ‖·‖ went from ', nb, ' to ', na, ' (', ...stats, '): whatever the add made large is brought back to one scale.'];
    }
    case 'attention': {
      const parts: NoticePart[] = ['Attention brings in the other tokens: its update f has ‖f‖ = ', na, ' (its input: ', nb, ')'];
      let b: { h: number; j: number; w: number } | null = null;
      const pattern = st.pattern ?? [];
      for (let h = 0; h < pattern.length; h++) {
        const j = topIndices(pattern[h], 1)[0];
        const w = j === undefined ? null : pattern[h][j];
        if (w !== null && w !== undefined && (b === null || w > b.w)) b = { h, j, w };
      }
      if (b !== null) {
        const ch = chars[b.j] ?? '';
        parts.push(`; the strongest weight is head ${b.h}'s on token ${b.j} “${ch === ' ' ? '␣' : ch}”: `, {
          value: b.w,
          formula: `softmax(q·kᵀ/√d_k) of head ${b.h}, from this token to token ${b.j}`,
        });
      }
      parts.push('.');
      return parts;
    }
    case 'residual': {
      const f = s.rows.find((r) => r.id === 'update')!;
      const alpha = st.alpha ?? 1;
      const cos = { value: cosine(before.values, after.values), formula: 'cos(x, out) = x·out / (‖x‖‖out‖): 1 = the direction kept' };
      if (!c.residual)
        return ['No residual: the output is f alone (‖f‖ = ', { value: norm(f.values), formula: `‖f‖ of ${f.trace}` }, '); the input (‖·‖ = ', nb, ') is dropped: cos(input, output) = ', cos, '.'];
      return [
        '‖·‖ went from ',
        nb,
        ' to ',
        na,
        ' after the add: the update α·f (‖α·f‖ = ',
        { value: Math.abs(alpha) * norm(f.values), formula: `|α| · ‖f‖, α = ${alpha}, f = ${f.trace}` },
        ') is added, the input is kept: cos(input, output) = ',
        cos,
        '.',
      ];
    }
    case 'ffn': {
      const pre = st.hidden?.pre ?? [];
      const post = st.hidden?.post ?? [];
      const positive = pre.filter((v) => v !== null && v > 0).length;
      const top = topIndices(post, 1)[0];
      const parts: NoticePart[] = [`The FFN works on this token alone: ${positive} of ${pre.length} hidden units have a positive pre-activation`];
      if (top !== undefined)
        parts.push(`, the strongest is unit ${top} (`, { value: post[top], formula: `act(x·W₁ᵀ + b₁) of unit ${top}, the engine’s hidden layer` }, ' after the activation)');
      parts.push('; its update has ‖f‖ = ', na, ' (its input: ', nb, ').');
      return parts;
    }
  }
}

/** The notice as plain text, its numbers written by `format`. */
export function noticeText(parts: readonly NoticePart[], format: (v: number | null) => string): string {
  return parts.map((p) => (typeof p === 'string' ? p : format(p.value))).join('');
}
