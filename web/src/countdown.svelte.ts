// A countdown to a deadline in whole seconds (`left`), for the waits a 429's Retry-After names: the sign-in
// throttle and the comment rate limit. It reads the clock at every tick rather than counting ticks, so a tab the
// browser throttled (timers delayed while hidden) still ends on time; each tick is armed for the next whole
// second, and nothing is armed once it ends or is stopped.
import { realTimers, type Timers } from './lib/timers';

export class Countdown {
  /** whole seconds left (rounded up); 0 when not counting */
  left = $state(0);
  private deadline = 0;
  private timer: unknown = null;
  private onDone: (() => void) | null = null;

  constructor(
    private timers: Timers = realTimers,
    private now: () => number = () => Date.now(),
  ) {}

  get active(): boolean {
    return this.left > 0;
  }

  /** Counts `seconds` down (again from the start if already counting); `onDone` runs when it reaches 0. */
  start(seconds: number, onDone?: () => void): void {
    this.stop();
    if (!(seconds > 0)) {
      onDone?.();
      return;
    }
    this.deadline = this.now() + seconds * 1000;
    this.onDone = onDone ?? null;
    this.tick();
  }

  /** Ends it now, without calling `onDone`. */
  stop(): void {
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
    this.onDone = null;
    this.left = 0;
  }

  private tick(): void {
    this.timer = null;
    const ms = this.deadline - this.now();
    if (ms <= 0) {
      const done = this.onDone;
      this.onDone = null;
      this.left = 0;
      done?.();
      return;
    }
    this.left = Math.ceil(ms / 1000);
    this.timer = this.timers.setTimeout(() => this.tick(), ms % 1000 || 1000);
  }
}
