// The countdown a 429's Retry-After starts (countdown.svelte.ts) and its words (lib/wait.ts), with fake timers.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Countdown } from '../../src/countdown.svelte';
import { waitWords } from '../../src/lib/wait';

afterEach(() => vi.useRealTimers());

describe('waitWords', () => {
  it('says seconds below two minutes, then minutes and seconds, then hours and minutes', () => {
    expect([1, 42, 60, 119, 120, 125, 900, 3600, 3601, 5400].map(waitWords)).toEqual(['1 s', '42 s', '60 s', '119 s', '2 min', '2 min 5 s', '15 min', '1 h', '1 h 1 min', '1 h 30 min']);
    expect(waitWords(41.2)).toBe('42 s'); // rounded up: never "try again" too early
    expect(waitWords(3599.5)).toBe('1 h');
    expect([0, -1, NaN].map(waitWords)).toEqual(['a moment', 'a moment', 'a moment']);
  });
});

describe('Countdown', () => {
  it('counts whole seconds down to 0, then calls onDone once and arms nothing more', async () => {
    vi.useFakeTimers();
    const c = new Countdown();
    const done = vi.fn();
    c.start(3, done);
    expect([c.left, c.active]).toEqual([3, true]);
    await vi.advanceTimersByTimeAsync(999);
    expect(c.left).toBe(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(c.left).toBe(2);
    await vi.advanceTimersByTimeAsync(1000);
    expect(c.left).toBe(1);
    expect(done).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1000);
    expect([c.left, c.active]).toEqual([0, false]);
    expect(done).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('follows the clock, not the ticks: a late timer (a throttled tab) still ends on time', () => {
    let now = 0;
    const armed: (() => void)[] = [];
    const c = new Countdown({ setTimeout: (f) => armed.push(f), clearTimeout: () => {} }, () => now);
    c.start(60);
    expect(c.left).toBe(60);
    now = 45_500; // the browser ran the first timer only 45.5 s later
    armed.shift()!();
    expect(c.left).toBe(15);
    now = 60_000;
    armed.shift()!();
    expect([c.left, c.active, armed.length]).toEqual([0, false, 0]);
  });

  it('stop() ends it without onDone; start() again restarts; 0 s calls onDone at once', async () => {
    vi.useFakeTimers();
    const c = new Countdown();
    const done = vi.fn();
    c.start(10, done);
    c.stop();
    expect([c.left, vi.getTimerCount()]).toEqual([0, 0]);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(done).not.toHaveBeenCalled();
    c.start(5, done);
    await vi.advanceTimersByTimeAsync(2_000);
    c.start(5, done); // a new 429: from the start, one timer only
    expect([c.left, vi.getTimerCount()]).toEqual([5, 1]);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(done).toHaveBeenCalledTimes(1);
    const now = vi.fn();
    c.start(0, now);
    expect([now.mock.calls.length, c.active]).toEqual([1, false]);
  });
});
