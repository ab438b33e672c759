// Data shaping for the charts: pure functions from API responses to what a chart draws.
import type { GradFlowLayer, StepEvent } from './api';

export interface Point {
  x: number;
  y: number;
}

export interface Series {
  id: string;
  label: string;
  points: Point[];
  /** points left out (null, or ≤ 0 on a log scale) */
  dropped: number;
}

/** The largest |v| over one or more vectors (nulls skipped): a diverging chart's half-width; 1 if all zero. */
export function symmetricMax(...vectors: ReadonlyArray<ReadonlyArray<number | null>>): number {
  let m = 0;
  for (const v of vectors) for (const x of v) if (x !== null && Number.isFinite(x)) m = Math.max(m, Math.abs(x));
  return m > 0 ? m : 1;
}

export interface DivergingBar {
  index: number;
  value: number | null;
  /** left edge and width as fractions of the chart's width, the zero line at 0.5 */
  x0: number;
  width: number;
  sign: -1 | 0 | 1;
}

/** Bars for a diverging chart: positive to the right of the centre line, negative to the left. */
export function divergingBars(values: ReadonlyArray<number | null>, halfWidth: number): DivergingBar[] {
  return values.map((v, index) => {
    if (v === null || !Number.isFinite(v) || v === 0) return { index, value: v, x0: 0.5, width: 0, sign: 0 };
    const w = Math.min(1, Math.abs(v) / halfWidth) * 0.5;
    return v > 0
      ? { index, value: v, x0: 0.5, width: w, sign: 1 }
      : { index, value: v, x0: 0.5 - w, width: w, sign: -1 };
  });
}

/** A series for a log-scale chart: non-positive and null values can't be drawn and are counted as dropped. */
export function logSeries(id: string, label: string, xs: number[], ys: ReadonlyArray<number | null>): Series {
  const points: Point[] = [];
  let dropped = 0;
  xs.forEach((x, i) => {
    const y = ys[i];
    if (y === null || y === undefined || !Number.isFinite(y) || y <= 0) dropped++;
    else points.push({ x, y });
  });
  return { id, label, points, dropped };
}

/** A series for a linear chart: only nulls are dropped. */
export function linearSeries(id: string, label: string, xs: number[], ys: ReadonlyArray<number | null>): Series {
  const points: Point[] = [];
  let dropped = 0;
  xs.forEach((x, i) => {
    const y = ys[i];
    if (y === null || y === undefined || !Number.isFinite(y)) dropped++;
    else points.push({ x, y });
  });
  return { id, label, points, dropped };
}

/** A log-scale domain covering every series, widened to whole decades. */
export function logDomain(series: ReadonlyArray<Series>): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of series)
    for (const p of s.points) {
      lo = Math.min(lo, p.y);
      hi = Math.max(hi, p.y);
    }
  if (!Number.isFinite(lo)) return [0.1, 10];
  const a = Math.floor(Math.log10(lo));
  let b = Math.ceil(Math.log10(hi));
  if (b === a) b = a + 1;
  return [10 ** a, 10 ** b];
}

export function linearDomain(series: ReadonlyArray<Series>, includeZero = true): [number, number] {
  let lo = includeZero ? 0 : Infinity;
  let hi = includeZero ? 0 : -Infinity;
  for (const s of series)
    for (const p of s.points) {
      lo = Math.min(lo, p.y);
      hi = Math.max(hi, p.y);
    }
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1];
  if (lo === hi) return [lo - 1, hi + 1];
  return [lo, hi];
}

export function xDomain(series: ReadonlyArray<Series>): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of series)
    for (const p of s.points) {
      lo = Math.min(lo, p.x);
      hi = Math.max(hi, p.x);
    }
  if (!Number.isFinite(lo)) return [0, 1];
  if (lo === hi) return [lo - 0.5, hi + 0.5];
  return [lo, hi];
}

/** The gradient-flow chart's series: layers numbered from 1 (1 = nearest the input). */
export function gradFlowSeries(
  id: string,
  label: string,
  layers: ReadonlyArray<GradFlowLayer>,
  metric: 'resid' | 'params',
): Series {
  return logSeries(
    id,
    label,
    layers.map((l) => l.layer + 1),
    layers.map((l) => (metric === 'resid' ? l.grad_norm_resid : l.grad_norm_params)),
  );
}

/** Which layers the drift table shows for a stack of `n`: the seed's 1, 5, 10, then every quarter, and the last. */
export function driftLayers(n: number): number[] {
  const picks = new Set<number>([1, 5, 10, 25, 50, 75, 100, n]);
  return [...picks].filter((l) => l >= 1 && l <= n).sort((a, b) => a - b);
}

export type Drift = 'healthy' | 'drifting' | 'exploding' | 'collapsing' | 'unknown';

/**
 * The drift table's status of a layer's output statistics. The rule, shown beside the table:
 * exploding when std > 10 or |mean| > 10; collapsing when std < 0.1; drifting when std is outside
 * [0.5, 2] or |mean| > 1; healthy otherwise.
 */
export function driftStatus(mean: number | null, std: number | null): Drift {
  if (mean === null || std === null || !Number.isFinite(mean) || !Number.isFinite(std)) return 'unknown';
  if (std > 10 || Math.abs(mean) > 10) return 'exploding';
  if (std < 0.1) return 'collapsing';
  if (std < 0.5 || std > 2 || Math.abs(mean) > 1) return 'drifting';
  return 'healthy';
}

export const DRIFT_RULE =
  'exploding: std > 10 or |mean| > 10 · collapsing: std < 0.1 · drifting: std outside [0.5, 2] or |mean| > 1 · healthy otherwise';

/** A run's metric over steps, from its step events (appendSteps keeps them in step order, one per step). */
export function runSeries(
  id: string,
  label: string,
  steps: ReadonlyArray<StepEvent>,
  metric: 'loss' | 'accuracy',
): Series {
  return linearSeries(
    id,
    label,
    steps.map((s) => s.step),
    steps.map((s) => s[metric]),
  );
}

/**
 * Adds step events to a run's list, kept in step order with one event per step number: a step already there is
 * replaced, not added twice (a reconnect replays; a run resumed from its checkpoint re-sends the steps after it
 * with the same numbers). One copy of the list per batch; an event without a finite step number is skipped.
 */
export function appendSteps(steps: ReadonlyArray<StepEvent>, evs: ReadonlyArray<StepEvent>): StepEvent[] {
  const out = steps.slice();
  for (const ev of evs) {
    if (!ev || !Number.isFinite(ev.step)) continue;
    const n = out.length;
    if (n === 0 || ev.step > out[n - 1].step) {
      out.push(ev);
      continue;
    }
    let lo = 0;
    let hi = n; // the first index whose step is ≥ ev.step
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (out[mid].step < ev.step) lo = mid + 1;
      else hi = mid;
    }
    if (out[lo].step === ev.step) out[lo] = ev;
    else out.splice(lo, 0, ev);
  }
  return out;
}

/** Adds one step event to a run's list (appendSteps with one). */
export function appendStep(steps: ReadonlyArray<StepEvent>, ev: StepEvent): StepEvent[] {
  return appendSteps(steps, [ev]);
}

/** Indices of the k largest values (ties: lower index first), nulls last. */
export function topIndices(values: ReadonlyArray<number | null>, k: number): number[] {
  return values
    .map((v, i) => ({ v: v ?? -Infinity, i }))
    .sort((a, b) => b.v - a.v || a.i - b.i)
    .slice(0, k)
    .map((e) => e.i);
}

/**
 * Whether two vectors hold the same numbers (null = null): a dependent answer (the residual or FFN of a token)
 * is drawn only while the vector it was asked for is still the one on screen.
 */
export function sameVector(a: ReadonlyArray<number | null> | null | undefined, b: ReadonlyArray<number | null> | null | undefined): boolean {
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A matrix's colour scale half-width for a heatmap (symmetric around zero). */
export function matrixMax(m: ReadonlyArray<ReadonlyArray<number | null>>): number {
  return symmetricMax(...m);
}

/** Every how many rows a chart labels its rows' indices so that labels stand at least `minGap` px apart. */
export function labelStep(rowHeight: number, minGap = 14): number {
  const need = Math.max(1, Math.ceil(minGap / Math.max(rowHeight, 1e-6)));
  for (const s of [1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 200, 256, 500, 512, 1000])
    if (s >= need) return s;
  return need;
}

/**
 * Label positions near `ys` (any order) at least `gap` apart, inside [lo, hi] where there is room: each label as
 * close to its own y as the others allow (a label per highlighted bar, beside a tall chart). Returns the
 * positions in the order of `ys`.
 */
export function spreadLabels(ys: readonly number[], gap: number, lo: number, hi: number): number[] {
  const order = ys.map((y, i) => ({ y, i })).sort((a, b) => a.y - b.y || a.i - b.i);
  const pos = order.map((o) => o.y);
  for (let k = 0; k < pos.length; k++) pos[k] = Math.max(pos[k], lo + k * gap, k ? pos[k - 1] + gap : -Infinity);
  // pushed past the bottom: move up from the end, keeping the gaps
  for (let k = pos.length - 1; k >= 0; k--) {
    const cap = hi - (pos.length - 1 - k) * gap;
    if (pos[k] > cap) pos[k] = cap;
  }
  const out = new Array<number>(ys.length);
  order.forEach((o, k) => (out[o.i] = pos[k]));
  return out;
}

/** The row a bar chart's keyboard cursor moves to for `key` (arrows, Home, End) among `n` rows; null: not a cursor key. */
export function moveCursor(key: string, cursor: number, n: number): number | null {
  if (key === 'ArrowDown' || key === 'ArrowRight') return Math.min(n - 1, cursor + 1);
  if (key === 'ArrowUp' || key === 'ArrowLeft') return Math.max(0, cursor - 1);
  if (key === 'Home') return 0;
  if (key === 'End') return n - 1;
  return null;
}
