// Debounced, latest-only requests: a control that moves fast (a slider) schedules a request on every change;
// only the last one after `delayMs` of quiet is sent, and sending it aborts the one in flight
// (AbortController), so requests never pile up and an old answer never overwrites a newer one.

export type Status = 'idle' | 'pending' | 'ready' | 'error';

export interface LatestOptions<R> {
  delayMs: number;
  onStatus?: (s: Status) => void;
  onResult: (r: R) => void;
  onError: (e: unknown) => void;
  /** timers, injectable for tests */
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (t: unknown) => void;
}

export interface Latest<A> {
  /** Schedules a request for `args`; `immediate` skips the debounce (a click, the first load). */
  schedule(args: A, immediate?: boolean): void;
  /** Cancels the pending and the in-flight request. */
  cancel(): void;
  /** How many requests were sent and how many were aborted (for tests and the debug line). */
  readonly stats: { sent: number; aborted: number };
}

export function isAbort(e: unknown): boolean {
  return (e instanceof DOMException && e.name === 'AbortError') || (e as { name?: string })?.name === 'AbortError';
}

export function latest<A, R>(
  fn: (args: A, signal: AbortSignal) => Promise<R>,
  opts: LatestOptions<R>,
): Latest<A> {
  const setTimer = opts.setTimer ?? ((f, ms) => setTimeout(f, ms));
  const clearTimer = opts.clearTimer ?? ((t) => clearTimeout(t as ReturnType<typeof setTimeout>));
  let timer: unknown = null;
  let controller: AbortController | null = null;
  let seq = 0;
  const stats = { sent: 0, aborted: 0 };

  const abortInFlight = () => {
    if (controller) {
      controller.abort();
      stats.aborted++;
      controller = null;
    }
  };

  const fire = (args: A, id: number) => {
    timer = null;
    abortInFlight();
    const c = new AbortController();
    controller = c;
    stats.sent++;
    let p: Promise<R>;
    try {
      p = fn(args, c.signal);
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      (r) => {
        if (id !== seq || c.signal.aborted) return;
        controller = null;
        opts.onStatus?.('ready');
        opts.onResult(r);
      },
      (e) => {
        if (id !== seq || c.signal.aborted || isAbort(e)) return;
        controller = null;
        opts.onStatus?.('error');
        opts.onError(e);
      },
    );
  };

  return {
    schedule(args: A, immediate = false) {
      const id = ++seq;
      if (timer !== null) clearTimer(timer);
      timer = null;
      opts.onStatus?.('pending');
      if (immediate || opts.delayMs <= 0) fire(args, id);
      else timer = setTimer(() => fire(args, id), opts.delayMs);
    },
    cancel() {
      seq++;
      if (timer !== null) clearTimer(timer);
      timer = null;
      abortInFlight();
    },
    stats,
  };
}
