// Follows one training run: GET /api/runs/{id} for its label, then its Server-Sent Events (a finished run replays
// its history). Step events are batched into the drawn list at most every 100 ms; a step number already drawn
// replaces its point (a resumed run re-sends the steps after its checkpoint with the same numbers).
// The queue's part: `queued` until a worker starts it; `requeued` when its worker stopped or died and it went
// back to the queue (then the checkpoint it will resume from is asked of GET /api/runs/{id}); the attempt and
// the step a worker resumed it from. `cancel()` asks DELETE /api/runs/{id} and says what the server answered.
import {
  deleteJson,
  describeError,
  getJson,
  type CancelAnswer,
  type EndEvent,
  type RunDetail,
  type StatusEvent,
  type StepEvent,
} from './lib/api';
import { appendSteps } from './lib/chart';
import { engineWall, recentEta, type ClockSample, type RecentEta } from './lib/eta';
import { isAbort } from './lib/latest';
import { cancelWords } from './lib/queue';
import { TERMINAL } from './lib/runs';
import { streamEvents } from './lib/sse';

export class RunStream {
  id = $state(0);
  status = $state('');
  label = $state('');
  /** every step drawn, one per step number, in step order */
  steps: StepEvent[] = $state.raw([]);
  /** the step event that came last (while a resumed run trains the steps after its checkpoint again, an earlier one than the last drawn) */
  latest: StepEvent | null = $state.raw(null);
  end: EndEvent | null = $state.raw(null);
  error: string | null = $state(null);
  /** it went back to the queue after its worker stopped or died (until a worker starts it again) */
  requeued = $state(false);
  /** the checkpoint step a requeued run will resume from (GET /api/runs/{id}), null until known */
  resumeStep: number | null = $state(null);
  /** the latest `running` event's attempt (1 = first start) and the step it resumed from */
  attempt: number | null = $state(null);
  resumedFrom: number | null = $state(null);
  /** what the last cancel said ("Cancelled", "Stopping after this step…"), null before any */
  cancelNote: string | null = $state(null);
  /** a cancel was asked and the run has not ended yet */
  cancelling = $state(false);
  /** the time left at the pace of the latest steps (lib/eta.ts), with the latest step event; null until known */
  eta: RecentEta | null = $state.raw(null);
  /** settles when the stream ends (tests) */
  settled: Promise<void> = Promise.resolve();
  private buffer: StepEvent[] = [];
  /** the engine's clock at this attempt's step events, in arrival order (reset when a worker starts the run) */
  private clock: ClockSample[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  private ctrl: AbortController | null = null;

  follow(id: number): void {
    if (id === this.id) return;
    this.stop();
    this.id = id;
    this.status = id ? 'connecting' : '';
    this.label = '';
    this.steps = [];
    this.latest = null;
    this.buffer = [];
    this.end = null;
    this.error = null;
    this.requeued = false;
    this.resumeStep = null;
    this.attempt = null;
    this.resumedFrom = null;
    this.cancelNote = null;
    this.cancelling = false;
    this.eta = null;
    this.clock = [];
    if (!id) return;
    const c = new AbortController();
    this.ctrl = c;
    getJson<{ label: string; status: string }>(`/api/runs/${id}`, c.signal).then(
      (r) => {
        if (!c.signal.aborted) this.label = r.label;
      },
      () => {},
    );
    this.settled = streamEvents(`/api/runs/${id}/events`, (name, data) => this.onEvent(name, data, c.signal), c.signal).then(
      () => {
        if (c.signal.aborted) return;
        this.flush();
        if (!this.end) this.status = this.status === 'running' ? 'stream closed' : this.status;
      },
      (e) => {
        if (c.signal.aborted || isAbort(e)) return;
        this.flush();
        this.error = describeError(e);
        this.status = 'error';
      },
    );
  }

  private onEvent(name: string, data: unknown, signal: AbortSignal) {
    if (name === 'step') {
      const ev = data as StepEvent;
      this.buffer.push(ev);
      const wall = engineWall(ev, this.resumedFrom ?? 0);
      if (wall !== null) {
        // a step sent again (a replay, a resume) starts the clock again
        if (this.clock.length && ev.step <= this.clock[this.clock.length - 1].step) this.clock = [];
        this.clock.push({ step: ev.step, wall });
        if (this.clock.length > 64) this.clock = this.clock.slice(-32);
      }
      if (this.status !== 'running') this.status = 'running';
      this.requeued = false;
      if (!this.timer) this.timer = setTimeout(() => this.flush(), 100);
    } else if (name === 'status') {
      const ev = data as StatusEvent;
      if (this.end) return;
      this.flush(); // the steps that came before it are drawn before the status changes
      // A local "cancelled" (the DELETE's 200) is not undone by a late status event.
      if (TERMINAL.has(this.status) && !TERMINAL.has(ev.status)) return;
      this.status = ev.status;
      if (ev.status === 'queued' && ev.requeued) {
        this.requeued = true;
        this.resumeStep = null;
        this.askCheckpoint(signal);
      } else if (ev.status === 'running') {
        this.requeued = false;
        this.attempt = ev.attempt ?? null;
        this.resumedFrom = ev.resumes_from_step ?? null;
        this.clock = []; // a new attempt: its own clock, from 0
      }
    } else if (name === 'end') {
      this.flush();
      this.end = data as EndEvent;
      this.status = this.end.status;
      this.requeued = false;
      if (this.cancelling) this.cancelNote = this.end.status === 'cancelled' ? 'Cancelled' : null;
      this.cancelling = false;
    }
  }

  /** A requeued run resumes from its checkpoint: its step, while the run is still waiting (a replay's is later). */
  private askCheckpoint(signal: AbortSignal) {
    getJson<RunDetail>(`/api/runs/${this.id}`, signal).then(
      (r) => {
        if (signal.aborted || !this.requeued || r.status !== 'queued') return;
        this.resumeStep = r.checkpoint?.step ?? null;
      },
      () => {},
    );
  }

  /**
   * DELETE /api/runs/{id}: a queued run is cancelled at once (200), a running one stops after its step (202,
   * "Stopping after this step…" until its `end` event). Throws what the server refused.
   */
  async cancel(): Promise<void> {
    const id = this.id;
    if (!id) return;
    this.cancelling = true;
    this.cancelNote = null;
    try {
      const a = await deleteJson<CancelAnswer>(`/api/runs/${id}`);
      if (id !== this.id) return;
      this.cancelNote = cancelWords(a);
      if (a?.status === 'cancelling' && !this.end) return; // the end event says when it stopped
      if (a?.status === 'cancelled' && !TERMINAL.has(this.status)) {
        this.status = 'cancelled';
        this.requeued = false;
      }
      this.cancelling = false;
    } catch (e) {
      if (id === this.id) this.cancelling = false;
      throw e;
    }
  }

  private flush() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (!this.buffer.length) return;
    this.steps = appendSteps(this.steps, this.buffer);
    const latest = this.buffer[this.buffer.length - 1];
    this.latest = latest;
    this.eta = recentEta(this.clock, latest.steps - latest.step);
    this.buffer = [];
  }

  stop(): void {
    this.ctrl?.abort();
    this.ctrl = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
