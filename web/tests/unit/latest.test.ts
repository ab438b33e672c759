import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { isAbort, latest, type Status } from '../../src/lib/latest';

/** A request that resolves when told to, and records whether it was aborted. */
function controllable() {
  const calls: { args: number; signal: AbortSignal; resolve: (v: string) => void; reject: (e: unknown) => void }[] = [];
  const fn = (args: number, signal: AbortSignal) =>
    new Promise<string>((resolve, reject) => {
      calls.push({ args, signal, resolve, reject });
      signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
    });
  return { calls, fn };
}

describe('latest (debounced, superseded requests aborted)', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('sends only the last of a burst, after the quiet period', async () => {
    const { calls, fn } = controllable();
    const results: string[] = [];
    const statuses: Status[] = [];
    const r = latest(fn, { delayMs: 100, onResult: (x) => results.push(x), onError: () => {}, onStatus: (s) => statuses.push(s) });
    for (let i = 1; i <= 10; i++) {
      r.schedule(i);
      vi.advanceTimersByTime(30);
    }
    expect(calls).toHaveLength(0);
    vi.advanceTimersByTime(100);
    expect(calls.map((c) => c.args)).toEqual([10]);
    calls[0].resolve('ten');
    await vi.runAllTimersAsync();
    expect(results).toEqual(['ten']);
    expect(statuses[0]).toBe('pending');
    expect(statuses.at(-1)).toBe('ready');
    expect(r.stats).toEqual({ sent: 1, aborted: 0 });
  });

  it('aborts the request in flight when a newer one is sent, and drops its answer', async () => {
    const { calls, fn } = controllable();
    const results: string[] = [];
    const errors: unknown[] = [];
    const r = latest(fn, { delayMs: 50, onResult: (x) => results.push(x), onError: (e) => errors.push(e) });
    r.schedule(1);
    vi.advanceTimersByTime(50);
    expect(calls).toHaveLength(1);
    r.schedule(2);
    vi.advanceTimersByTime(50);
    expect(calls).toHaveLength(2);
    expect(calls[0].signal.aborted).toBe(true);
    expect(calls[1].signal.aborted).toBe(false);
    calls[1].resolve('two');
    await vi.runAllTimersAsync();
    expect(results).toEqual(['two']);
    expect(errors).toEqual([]);
    expect(r.stats).toEqual({ sent: 2, aborted: 1 });
  });

  it('ignores an old answer that arrives after a newer request was scheduled', async () => {
    const { calls, fn } = controllable();
    const results: string[] = [];
    const r = latest(fn, { delayMs: 50, onResult: (x) => results.push(x), onError: () => {} });
    r.schedule(1, true);
    r.schedule(2); // pending in the debounce window
    calls[0].resolve('one');
    await Promise.resolve();
    await Promise.resolve();
    expect(results).toEqual([]);
    vi.advanceTimersByTime(50);
    calls[1].resolve('two');
    await vi.runAllTimersAsync();
    expect(results).toEqual(['two']);
  });

  it('sends at once when immediate, and reports errors (not aborts)', async () => {
    const { calls, fn } = controllable();
    const errors: unknown[] = [];
    const statuses: Status[] = [];
    const r = latest(fn, { delayMs: 1000, onResult: () => {}, onError: (e) => errors.push(e), onStatus: (s) => statuses.push(s) });
    r.schedule(7, true);
    expect(calls.map((c) => c.args)).toEqual([7]);
    calls[0].reject(new Error('refused'));
    await vi.runAllTimersAsync();
    expect(errors).toHaveLength(1);
    expect(statuses.at(-1)).toBe('error');
  });

  it('cancel drops the pending request and aborts the one in flight', async () => {
    const { calls, fn } = controllable();
    const results: string[] = [];
    const r = latest(fn, { delayMs: 10, onResult: (x) => results.push(x), onError: () => {} });
    r.schedule(1, true);
    r.schedule(2);
    r.cancel();
    vi.advanceTimersByTime(100);
    expect(calls).toHaveLength(1);
    expect(calls[0].signal.aborted).toBe(true);
    await vi.runAllTimersAsync();
    expect(results).toEqual([]);
  });

  it('recognises abort errors', () => {
    expect(isAbort(new DOMException('x', 'AbortError'))).toBe(true);
    expect(isAbort({ name: 'AbortError' })).toBe(true);
    expect(isAbort(new Error('x'))).toBe(false);
  });
});
