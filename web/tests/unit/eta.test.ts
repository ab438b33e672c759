// The Train page's time left at the recent pace (lib/eta.ts), against the engine's eta_s, which averages over
// the whole run so far and so lags when the pace changes.
import { describe, expect, it } from 'vitest';
import { engineWall, recentEta, type ClockSample } from '../../src/lib/eta';
import type { StepEvent } from '../../src/lib/api';

/** Step events as the engine sends them: eta_s = wall / done × left (src/lab/training_run.cpp). */
function events(secondsPerStep: (step: number) => number, steps: number, first = 0, upTo = steps): StepEvent[] {
  const out: StepEvent[] = [];
  let wall = 0;
  for (let step = first + 1; step <= upTo; step++) {
    wall += secondsPerStep(step);
    const done = step - first;
    out.push({ step, steps, loss: 1, accuracy: 0, lr: 1e-3, grad_norm: 1, tokens_per_s: (done * 64) / wall, eta_s: (wall / done) * (steps - step) });
  }
  return out;
}

describe('the time left', () => {
  it('reads the engine’s clock back from eta_s', () => {
    const evs = events(() => 0.25, 100);
    expect(engineWall(evs[9], 0)).toBeCloseTo(2.5, 9);
    expect(engineWall(evs[99], 0)).toBeNull(); // the last step: nothing left to divide by
    expect(engineWall({ ...evs[0], eta_s: null }, 0)).toBeNull();
    // a resumed attempt counts its steps from the checkpoint
    const resumed = events(() => 0.5, 100, 40, 60);
    expect(engineWall(resumed[9], 40)).toBeCloseTo(5, 9);
  });

  it('follows the latest steps’ pace when it changes, where the engine’s mean lags', () => {
    // 60 slow steps (0.2 s), then the run speeds up tenfold (the other run finished)
    const evs = events((s) => (s <= 60 ? 0.2 : 0.02), 400, 0, 120);
    const clock: ClockSample[] = evs.map((e) => ({ step: e.step, wall: engineWall(e, 0)! }));
    const last = evs.at(-1)!;
    const r = recentEta(clock, last.steps - last.step)!;
    expect(r.over).toBe(20);
    expect(r.perStep).toBeCloseTo(0.02, 9);
    expect(r.eta).toBeCloseTo(280 * 0.02, 6); // 5.6 s at the pace it now trains
    expect(last.eta_s!).toBeCloseTo((13.2 / 120) * 280, 6); // the engine's mean: 30.8 s, five times too long
  });

  it('uses what it has: two samples at least, the window’s oldest within it, nothing when no time passed', () => {
    expect(recentEta([], 10)).toBeNull();
    expect(recentEta([{ step: 3, wall: 1 }], 10)).toBeNull();
    expect(recentEta([{ step: 3, wall: 1 }, { step: 5, wall: 2 }], 10)).toEqual({ eta: 5, perStep: 0.5, over: 2 });
    expect(recentEta([{ step: 3, wall: 1 }, { step: 4, wall: 1 }], 10)).toBeNull();
    // events that skip steps (a slow reader): the window is counted in steps, not events
    const sparse = [0, 10, 20, 30, 40].map((step) => ({ step, wall: step * 0.1 }));
    expect(recentEta(sparse, 100, 20)).toEqual({ eta: expect.closeTo(10, 9), perStep: expect.closeTo(0.1, 9), over: 20 });
  });
});
