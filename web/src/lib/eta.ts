// The Train page's time left, from the rate of the latest steps. The engine's own `eta_s` is the steps left times
// the mean time per step since the run (this attempt) started — `wall / done × left` (src/lab/training_run.cpp) —
// so it lags whenever the pace changes (the other run finishing and freeing a core, the first slow steps): it
// still counts the slow minutes after the run has sped up. The engine's clock at each step is in that same
// number: wall = eta_s × done / left. Over the last steps' clock the page takes the recent time per step.
import type { StepEvent } from './api';

/** The engine's training clock (seconds since this attempt started) at a step event, or null if it cannot say. */
export function engineWall(ev: StepEvent, first: number): number | null {
  const left = ev.steps - ev.step;
  const done = ev.step - first;
  if (ev.eta_s === null || ev.eta_s === undefined || !Number.isFinite(ev.eta_s) || left <= 0 || done <= 0) return null;
  return (ev.eta_s * done) / left;
}

export interface ClockSample {
  step: number;
  wall: number;
}

/** The number of latest steps the rate is taken over. */
export const ETA_WINDOW = 20;

export interface RecentEta {
  /** seconds left at the recent pace */
  eta: number;
  /** seconds per step over the window */
  perStep: number;
  /** how many steps the window spans */
  over: number;
}

/**
 * Seconds left for `left` steps at the pace of the last `window` steps of `samples` (in arrival order, one
 * attempt's): the clock's change over the steps' change between the newest sample and the oldest within the
 * window. Null with fewer than two samples or no time passed.
 */
export function recentEta(samples: readonly ClockSample[], left: number, window = ETA_WINDOW): RecentEta | null {
  if (samples.length < 2 || left < 0) return null;
  const last = samples[samples.length - 1];
  let first = samples[samples.length - 2];
  for (let k = samples.length - 2; k >= 0; k--) {
    if (last.step - samples[k].step > window) break;
    first = samples[k];
  }
  const steps = last.step - first.step;
  const dt = last.wall - first.wall;
  if (steps <= 0 || !(dt > 0)) return null;
  const perStep = dt / steps;
  return { eta: perStep * left, perStep, over: steps };
}
