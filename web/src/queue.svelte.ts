// The places in the shared training queue of the Train page's queued runs: GET /api/runs?mine=1 (signed in) or
// GET /api/runs, polled while some run of the page is queued and the tab is visible, at most every `pollMs`
// (3 s). Like the comment poll, it is a chain of timeouts, each armed only after the previous answer came back.
// A run the account's list lacks (one submitted signed out, or someone else's in a shared URL) is looked for in
// the whole list.
import { ApiRefusal, getJson, type QueueSummary, type RunList } from './lib/api';
import { isAbort } from './lib/latest';
import { realTimers, type Timers } from './lib/timers';

export const QUEUE_POLL_MS = 3000;

export type ListFetch = (path: string, signal: AbortSignal) => Promise<RunList>;

export class QueueWatch {
  /** the queue as the last answer gave it; null before one */
  queue: QueueSummary | null = $state.raw(null);
  /** run id → its place (1 = next), for the watched runs the last answer listed as queued */
  positions: Record<number, number> = $state.raw({});
  /** polls answered (tests, the debug line) */
  polls = $state(0);
  private wanted: number[] = [];
  private mine = false;
  private visible = true;
  private timer: unknown = null;
  private ctrl: AbortController | null = null;
  private lastAt = -Infinity;
  private destroyed = false;

  constructor(
    private fetchList: ListFetch = (path, signal) => getJson<RunList>(path, signal),
    private timers: Timers = realTimers,
    private now: () => number = () => Date.now(),
    readonly pollMs = QUEUE_POLL_MS,
  ) {}

  /** The page's runs that are queued now (their streams say so), and whether the reader is signed in. */
  watch(ids: ReadonlyArray<number>, signedIn: boolean): void {
    const next = [...new Set(ids.filter((id) => id > 0))].sort((a, b) => a - b);
    const changed = next.join(',') !== this.wanted.join(',');
    this.wanted = next;
    this.mine = signedIn;
    if (!changed) return;
    if (next.length === 0) {
      this.disarm();
      this.positions = {};
      return;
    }
    this.arm();
  }

  /** Whether the tab is visible: polls run only while it is. */
  setVisible(v: boolean): void {
    if (v === this.visible) return;
    this.visible = v;
    if (v) this.arm();
    else this.disarm();
  }

  /** The place of run `id` (1 = next to start), or null when no answer listed it as queued. */
  position(id: number): number | null {
    return this.positions[id] ?? null;
  }

  get polling(): boolean {
    return this.timer !== null || this.ctrl !== null;
  }

  private get active(): boolean {
    return !this.destroyed && this.visible && this.wanted.length > 0;
  }

  private arm(): void {
    if (this.timer !== null || this.ctrl !== null || !this.active) return;
    const wait = Math.max(0, this.lastAt + this.pollMs - this.now());
    this.timer = this.timers.setTimeout(() => {
      this.timer = null;
      void this.poll().finally(() => this.arm());
    }, wait);
  }

  private disarm(): void {
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
  }

  /** One poll: the account's list (signed in) or the whole one; the whole one too if the first lacked a watched run. */
  async poll(): Promise<void> {
    if (!this.active || this.ctrl) return;
    const c = new AbortController();
    this.ctrl = c;
    this.lastAt = this.now();
    try {
      let list: RunList | null = null;
      if (this.mine) {
        try {
          list = await this.fetchList('/api/runs?mine=1', c.signal);
        } catch (e) {
          if (!(e instanceof ApiRefusal && e.status === 401)) throw e; // signed out meanwhile: the whole list
        }
      }
      const listed = (l: RunList | null) => !!l && this.wanted.every((id) => l.runs.some((r) => r.id === id));
      if (!listed(list)) list = await this.fetchList('/api/runs', c.signal);
      if (c.signal.aborted || !list) return;
      const positions: Record<number, number> = {};
      for (const r of list.runs)
        if (this.wanted.includes(r.id) && r.status === 'queued' && typeof r.queue_position === 'number') positions[r.id] = r.queue_position;
      this.positions = positions;
      this.queue = list.queue ?? null;
      this.polls++;
    } catch (e) {
      if (!isAbort(e)) console.warn('GET /api/runs (the queue):', e);
      /* a missed poll: the next one tries again */
    } finally {
      if (this.ctrl === c) this.ctrl = null;
    }
  }

  /** Stops polling for good (the page is gone). */
  destroy(): void {
    this.destroyed = true;
    this.disarm();
    this.ctrl?.abort();
    this.ctrl = null;
  }
}
