// The gradient-flow page's dynamic-programming exercise (lessons/gradflow.md, `dp-analogy`): the edit-distance
// table the learner fills cell by cell — the analogy, computed here, not by the engine — and the residual
// recurrence x_{l+1} = x_l + f_l(x_l) read from the engine's trace of chars-small, one step per sub-layer.
import { norm } from './vec';

/** The longest word the exercise takes (the table stays readable on a phone). */
export const WORD_MAX = 8;

/** Why a word is refused before anything is computed, or null when it is fine. */
export function wordProblem(w: string): string | null {
  const chars = [...w];
  if (chars.length === 0) return 'type at least one letter';
  if (chars.length > WORD_MAX) return `at most ${WORD_MAX} letters (this has ${chars.length})`;
  const bad = chars.find((c) => !/^[a-z]$/.test(c));
  if (bad !== undefined) return `only the letters a–z (“${bad}” is not one)`;
  return null;
}

/** The full Levenshtein table: d[i][j] = the distance between a's first i letters and b's first j letters. */
export function editTable(a: string, b: string): number[][] {
  const A = [...a];
  const B = [...b];
  const d: number[][] = Array.from({ length: A.length + 1 }, (_, i) => Array.from({ length: B.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= A.length; i++)
    for (let j = 1; j <= B.length; j++)
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (A[i - 1] === B[j - 1] ? 0 : 1));
  return d;
}

export function editDistance(a: string, b: string): number {
  const d = editTable(a, b);
  return d[d.length - 1][d[0].length - 1];
}

export interface Cell {
  i: number;
  j: number;
}

/** The cells the learner fills, in order (row by row); the first row and column are given (the empty prefix). */
export function fillOrder(a: string, b: string): Cell[] {
  const out: Cell[] = [];
  for (let i = 1; i <= [...a].length; i++) for (let j = 1; j <= [...b].length; j++) out.push({ i, j });
  return out;
}

export type Move = 'match' | 'substitute' | 'delete' | 'insert';

export interface Reuse {
  /** the three earlier cells d[i][j] reads */
  reads: { cell: Cell; move: Move; value: number; cost: number }[];
  /** the one that gave the minimum (the first in the order diagonal, up, left when several tie) */
  chosen: Cell;
  move: Move;
  value: number;
}

/** What cell (i, j) of the table reuses: the diagonal (match or substitute), the cell above (delete a's letter)
 * and the cell to the left (insert b's letter), each with its cost; the smallest wins. */
export function reuse(d: number[][], a: string, b: string, i: number, j: number): Reuse {
  const same = [...a][i - 1] === [...b][j - 1];
  const reads = [
    { cell: { i: i - 1, j: j - 1 }, move: (same ? 'match' : 'substitute') as Move, value: d[i - 1][j - 1], cost: same ? 0 : 1 },
    { cell: { i: i - 1, j }, move: 'delete' as Move, value: d[i - 1][j], cost: 1 },
    { cell: { i, j: j - 1 }, move: 'insert' as Move, value: d[i][j - 1], cost: 1 },
  ];
  let best = reads[0];
  for (const r of reads) if (r.value + r.cost < best.value + best.cost) best = r;
  return { reads, chosen: best.cell, move: best.move, value: best.value + best.cost };
}

/** The Euclidean length of a vector of the engine's numbers (lib/vec.ts). */
export { norm };

export interface ResidualStep {
  /** l: x_{l+1} = x_l + f_l(x_l) */
  l: number;
  /** "block 0, attention" */
  label: string;
  /** the trace names of x_l, f_l and x_{l+1} */
  names: { x: string; f: string; next: string };
  x: (number | null)[];
  f: (number | null)[];
  next: (number | null)[];
  normX: number;
  normF: number;
  normNext: number;
  /** max_i |x_{l+1}[i] − (x_l[i] + f_l[i])|: float32 rounding when the stream is x + f (pre placement, α = 1) */
  gap: number;
}

/** The trace prefixes the exercise asks /api/compute/block for: per block, its stream and both increments. */
export function recurrenceTraceNames(nBlocks: number): string[] {
  const names: string[] = [];
  for (let b = 0; b < nBlocks; b++) names.push(`blocks.${b}.hook_resid_`, `blocks.${b}.hook_attn_out`, `blocks.${b}.hook_mlp_out`);
  return names;
}

/**
 * The residual recurrence of one token (`pos`) through a pre-LN stack, one step per sub-layer: x_0 is block 0's
 * resid_pre; the attention step adds attn_out to reach resid_mid, the FFN step adds mlp_out to reach resid_post
 * (the next block's resid_pre). Every vector is the engine's trace; only the norms and the gap are taken here.
 * Null when the trace lacks a name.
 */
export function residualSteps(trace: Record<string, unknown>, pos: number, nBlocks: number): ResidualStep[] | null {
  const row = (name: string): (number | null)[] | null => {
    const m = trace[name] as (number | null)[][] | undefined;
    return Array.isArray(m) && Array.isArray(m[pos]) ? m[pos] : null;
  };
  const steps: ResidualStep[] = [];
  for (let b = 0; b < nBlocks; b++) {
    for (const [sub, x, f, next] of [
      ['attention', `blocks.${b}.hook_resid_pre`, `blocks.${b}.hook_attn_out`, `blocks.${b}.hook_resid_mid`],
      ['FFN', `blocks.${b}.hook_resid_mid`, `blocks.${b}.hook_mlp_out`, `blocks.${b}.hook_resid_post`],
    ] as const) {
      const xv = row(x);
      const fv = row(f);
      const nv = row(next);
      if (!xv || !fv || !nv) return null;
      let gap = 0;
      for (let i = 0; i < xv.length; i++) gap = Math.max(gap, Math.abs((nv[i] ?? NaN) - ((xv[i] ?? NaN) + (fv[i] ?? NaN))));
      steps.push({ l: steps.length, label: `block ${b}, ${sub}`, names: { x, f, next }, x: xv, f: fv, next: nv, normX: norm(xv), normF: norm(fv), normNext: norm(nv), gap });
    }
  }
  return steps;
}

/** "x_3 = x_0 + f_0 + f_1 + f_2": the unrolled sum after `k` steps. */
export function unrolled(k: number): string {
  if (k <= 0) return 'x_0';
  return `x_${k} = x_0 + ${Array.from({ length: k }, (_, l) => `f_${l}`).join(' + ')}`;
}

const SUB: Record<string, string> = { '0': '₀', '1': '₁', '2': '₂', '3': '₃', '4': '₄', '5': '₅', '6': '₆', '7': '₇', '8': '₈', '9': '₉', l: 'ₗ', '+': '₊' };

/** "x_12 + f_l" → "x₁₂ + fₗ": the subscripts of a plain-text formula, for reading. */
export function subscripts(s: string): string {
  return s.replace(/_([0-9]+|l\+1|l)(?![a-z])/g, (_, d: string) => [...d].map((c) => SUB[c] ?? c).join(''));
}
