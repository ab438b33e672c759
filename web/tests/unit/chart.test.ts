import { describe, expect, it } from 'vitest';
import {
  moveCursor,
  appendStep,
  appendSteps,
  divergingBars,
  driftLayers,
  driftStatus,
  gradFlowSeries,
  labelStep,
  linearDomain,
  logDomain,
  logSeries,
  runSeries,
  sameVector,
  spreadLabels,
  symmetricMax,
  topIndices,
  xDomain,
} from '../../src/lib/chart';
import type { StepEvent } from '../../src/lib/api';

describe('diverging bars', () => {
  it('puts positives right of the centre and negatives left, scaled to the shared half-width', () => {
    const half = symmetricMax([1, -2], [0.5, null]);
    expect(half).toBe(2);
    const bars = divergingBars([1, -2, 0, null], half);
    expect(bars[0]).toEqual({ index: 0, value: 1, x0: 0.5, width: 0.25, sign: 1 });
    expect(bars[1]).toEqual({ index: 1, value: -2, x0: 0, width: 0.5, sign: -1 });
    expect(bars[2].width).toBe(0);
    expect(bars[3]).toMatchObject({ value: null, width: 0, sign: 0 });
  });
  it('clips values beyond the half-width and never divides by zero', () => {
    expect(divergingBars([10], 2)[0].width).toBe(0.5);
    expect(symmetricMax([0, 0])).toBe(1);
    expect(symmetricMax([])).toBe(1);
  });
});

describe('series and domains', () => {
  it('drops points a log scale cannot draw, and counts them', () => {
    const s = logSeries('a', 'A', [1, 2, 3, 4], [0.1, 0, null, 10]);
    expect(s.points).toEqual([
      { x: 1, y: 0.1 },
      { x: 4, y: 10 },
    ]);
    expect(s.dropped).toBe(2);
    expect(logDomain([s])).toEqual([0.1, 10]);
    expect(logDomain([logSeries('b', 'B', [1], [0.003])])).toEqual([0.001, 0.01]);
    expect(logDomain([])).toEqual([0.1, 10]);
  });
  it('linear and x domains', () => {
    const s = logSeries('a', 'A', [3, 5], [2, 4]);
    expect(linearDomain([s])).toEqual([0, 4]);
    expect(linearDomain([s], false)).toEqual([2, 4]);
    expect(xDomain([s])).toEqual([3, 5]);
    expect(xDomain([logSeries('a', 'A', [3], [1])])).toEqual([2.5, 3.5]);
  });
  it('shapes gradient-flow layers with layers numbered from 1', () => {
    const layers = [
      { layer: 0, grad_norm_params: 0.2, grad_norm_resid: 0.002, act_mean: 0, act_std: 1 },
      { layer: 1, grad_norm_params: 0.3, grad_norm_resid: null, act_mean: 0, act_std: 1 },
    ];
    expect(gradFlowSeries('m', 'M', layers, 'resid')).toMatchObject({ points: [{ x: 1, y: 0.002 }], dropped: 1 });
    expect(gradFlowSeries('m', 'M', layers, 'params').points).toEqual([
      { x: 1, y: 0.2 },
      { x: 2, y: 0.3 },
    ]);
  });
});

describe('drift table', () => {
  it('picks the seed’s layers and the last', () => {
    expect(driftLayers(100)).toEqual([1, 5, 10, 25, 50, 75, 100]);
    expect(driftLayers(12)).toEqual([1, 5, 10, 12]);
    expect(driftLayers(3)).toEqual([1, 3]);
    expect(driftLayers(1)).toEqual([1]);
  });
  it('classifies by the stated rule', () => {
    expect(driftStatus(0, 1)).toBe('healthy');
    expect(driftStatus(3.2, 15.7)).toBe('exploding');
    expect(driftStatus(87, 4312)).toBe('exploding');
    expect(driftStatus(0.01, 0.05)).toBe('collapsing');
    expect(driftStatus(0.01, 0.2)).toBe('drifting');
    expect(driftStatus(1.5, 1)).toBe('drifting');
    expect(driftStatus(null, 1)).toBe('unknown');
  });
});

describe('training runs', () => {
  const ev = (step: number, loss: number | null): StepEvent => ({
    step,
    steps: 3,
    loss,
    accuracy: step / 3,
    lr: 1e-3,
    grad_norm: 1,
    tokens_per_s: 1,
    eta_s: 0,
  });
  it('appends steps in order and replaces a replayed step', () => {
    let s: StepEvent[] = [];
    s = appendStep(s, ev(1, 2));
    s = appendStep(s, ev(2, 1));
    s = appendStep(s, ev(2, 0.9));
    s = appendStep(s, ev(3, null));
    expect(s.map((e) => [e.step, e.loss])).toEqual([
      [1, 2],
      [2, 0.9],
      [3, null],
    ]);
    const loss = runSeries('a', 'A', s, 'loss');
    expect(loss.points).toEqual([
      { x: 1, y: 2 },
      { x: 2, y: 0.9 },
    ]);
    expect(loss.dropped).toBe(1);
    expect(runSeries('a', 'A', s, 'accuracy').points.map((p) => p.y)).toEqual([1 / 3, 2 / 3, 1]);
  });
  it('a run resumed from its checkpoint re-sends steps: each step number is drawn once, the newest event kept', () => {
    // steps 1..8 trained, the worker died, the next resumed from the checkpoint at 5: 6, 7, 8 come again
    let s: StepEvent[] = [];
    for (const n of [1, 2, 3, 4, 5, 6, 7, 8]) s = appendStep(s, ev(n, 10 - n));
    const again = [6, 7, 8, 9].map((n) => ({ ...ev(n, 10 - n), eta_s: 1 }));
    s = appendSteps(s, again);
    expect(s.map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(s.slice(5).every((e) => e.eta_s === 1)).toBe(true);
    const loss = runSeries('a', 'A', s, 'loss');
    expect(loss.points.map((p) => p.x)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(new Set(loss.points.map((p) => p.x)).size).toBe(loss.points.length);
    // a batch that repeats itself, out of order, and a step missing in between
    s = appendSteps([ev(1, 1), ev(3, 3)], [ev(3, 0.3), ev(2, 2), ev(2, 0.2), ev(5, 5), ev(4, 4), ev(5, 0.5)]);
    expect(s.map((e) => [e.step, e.loss])).toEqual([
      [1, 1],
      [2, 0.2],
      [3, 0.3],
      [4, 4],
      [5, 0.5],
    ]);
    // an event without a step number is left out; the input list is not changed
    const before = [ev(1, 1)];
    expect(appendSteps(before, [{ ...ev(2, 2), step: NaN }]).map((e) => e.step)).toEqual([1]);
    expect(appendSteps(before, [ev(1, 0.5)])[0].loss).toBe(0.5);
    expect(before[0].loss).toBe(1);
  });
  it('top indices, ties by index, nulls last', () => {
    expect(topIndices([0.1, 3, null, 3, -1], 3)).toEqual([1, 3, 0]);
  });
});

describe('sameVector', () => {
  it('is true only for the same numbers in the same order (a dependent answer belongs to the vector shown)', () => {
    expect(sameVector([1, 2, null], [1, 2, null])).toBe(true);
    expect(sameVector([1, 2], [1, 2.0000001])).toBe(false);
    expect(sameVector([1, 2], [1, 2, 3])).toBe(false);
    expect(sameVector([1, null], [1, 0])).toBe(false);
    expect(sameVector(null, [1])).toBe(false);
    expect(sameVector([], undefined)).toBe(false);
  });
});

describe('chart labels', () => {
  it('labels every k-th row, k a round number that keeps the labels apart', () => {
    expect(labelStep(16)).toBe(1);
    expect(labelStep(8)).toBe(2);
    expect(labelStep(4)).toBe(4);
    expect(labelStep(3)).toBe(5);
    expect(labelStep(1)).toBe(16);
    expect(labelStep(0.5)).toBe(32);
  });
  it('spreads labels that would overlap, each near its own y, within the chart', () => {
    expect(spreadLabels([10, 100], 13, 0, 200)).toEqual([10, 100]);
    expect(spreadLabels([12, 10, 11], 13, 0, 200)).toEqual([36, 10, 23]);
    // at the bottom edge they move up
    expect(spreadLabels([199, 198], 13, 0, 200)).toEqual([200, 187]);
    const ys = [5, 6, 7, 8, 9, 50, 51];
    const out = spreadLabels(ys, 13, 0, 300);
    const sorted = [...out].sort((a, b) => a - b);
    for (let k = 1; k < sorted.length; k++) expect(sorted[k] - sorted[k - 1]).toBeGreaterThanOrEqual(13);
  });
});

describe('moveCursor', () => {
  it('moves a bar chart cursor by arrow, Home and End, within the rows', () => {
    expect(moveCursor('ArrowDown', -1, 5)).toBe(0);
    expect(moveCursor('ArrowRight', 4, 5)).toBe(4);
    expect(moveCursor('ArrowUp', 0, 5)).toBe(0);
    expect(moveCursor('ArrowLeft', 3, 5)).toBe(2);
    expect(moveCursor('Home', 3, 5)).toBe(0);
    expect(moveCursor('End', 0, 5)).toBe(4);
    expect(moveCursor('a', 2, 5)).toBeNull();
  });
});
