// Follows one training run: GET /api/runs/{id} for its label, then its Server-Sent Events (a finished run replays
// its history). Step events are batched into the drawn list at most every 100 ms.
import { describeError, getJson, type EndEvent, type StatusEvent, type StepEvent } from './lib/api';
import { appendStep } from './lib/chart';
import { isAbort } from './lib/latest';
import { streamEvents } from './lib/sse';

export class RunStream {
  id = $state(0);
  status = $state('');
  label = $state('');
  steps: StepEvent[] = $state.raw([]);
  end: EndEvent | null = $state.raw(null);
  error: string | null = $state(null);
  private buffer: StepEvent[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  private ctrl: AbortController | null = null;

  follow(id: number): void {
    if (id === this.id) return;
    this.stop();
    this.id = id;
    this.status = id ? 'connecting' : '';
    this.label = '';
    this.steps = [];
    this.buffer = [];
    this.end = null;
    this.error = null;
    if (!id) return;
    const c = new AbortController();
    this.ctrl = c;
    getJson<{ label: string; status: string }>(`/api/runs/${id}`, c.signal).then(
      (r) => {
        if (!c.signal.aborted) this.label = r.label;
      },
      () => {},
    );
    streamEvents(`/api/runs/${id}/events`, (name, data) => this.onEvent(name, data), c.signal).then(
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

  private onEvent(name: string, data: unknown) {
    if (name === 'step') {
      this.buffer.push(data as StepEvent);
      if (this.status !== 'running') this.status = 'running';
      if (!this.timer) this.timer = setTimeout(() => this.flush(), 100);
    } else if (name === 'status') {
      this.status = (data as StatusEvent).status;
    } else if (name === 'end') {
      this.flush();
      this.end = data as EndEvent;
      this.status = this.end.status;
    }
  }

  private flush() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (!this.buffer.length) return;
    let s = this.steps;
    for (const ev of this.buffer) s = appendStep(s, ev);
    this.buffer = [];
    this.steps = s;
  }

  stop(): void {
    this.ctrl?.abort();
    this.ctrl = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
