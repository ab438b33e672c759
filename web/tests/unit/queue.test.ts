// The training queue on the Train page: its words (ordinals, the queue line, a requeue, a cancel, a refusal),
// the poll of GET /api/runs (how often, which list, only while wanted and visible), and a run's stream through
// a requeue (re-sent steps drawn once, the checkpoint it resumes from) and a cancel.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiRefusal, setFetch, type Run, type RunList } from '../../src/lib/api';
import {
  cancelWords,
  ordinal,
  placeAnnouncement,
  queueSummaryWords,
  queueWords,
  requeuedWords,
  resumedWords,
  submitErrorWords,
} from '../../src/lib/queue';
import { QueueWatch } from '../../src/queue.svelte';
import { RunStream } from '../../src/run-stream.svelte';

describe('queue words', () => {
  it('ordinals: 1st 2nd 3rd, the teens with th, then 21st 22nd 23rd …', () => {
    const want: Record<number, string> = {
      0: '0th', 1: '1st', 2: '2nd', 3: '3rd', 4: '4th', 9: '9th', 10: '10th', 11: '11th', 12: '12th', 13: '13th', 14: '14th',
      20: '20th', 21: '21st', 22: '22nd', 23: '23rd', 24: '24th', 101: '101st', 102: '102nd', 103: '103rd',
      111: '111th', 112: '112th', 113: '113th', 121: '121st', 1011: '1011th', 1021: '1021st',
    };
    for (const [n, s] of Object.entries(want)) expect(ordinal(Number(n))).toBe(s);
  });

  it('the queue line: the place, then the queue around it', () => {
    expect(queueWords(3, { queued: 7, running: 2, workers: 2 })).toBe('Waiting: 3rd in the queue — 7 jobs waiting, 2 training on 2 workers');
    expect(queueWords(1, { queued: 1, running: 1, workers: 1 })).toBe('Waiting: 1st in the queue (next to start) — 1 job waiting, 1 training on 1 worker');
    expect(queueWords(12, { queued: 12, running: 0, workers: 3 })).toBe('Waiting: 12th in the queue — 12 jobs waiting, 0 training on 3 workers');
    // before the first poll answered, or while no answer listed the run as queued
    expect(queueWords(null, null)).toBe('Waiting: in the queue');
    expect(queueWords(undefined, { queued: 2, running: 2, workers: 1 })).toBe('Waiting: in the queue — 2 jobs waiting, 2 training on 1 worker');
    expect(queueSummaryWords({ queued: 1, running: 0, workers: 0 })).toBe('1 job waiting, no worker is up to train it');
    expect(queueSummaryWords({ queued: 4, running: 0, workers: 0 })).toBe('4 jobs waiting, no worker is up to train them');
  });

  it('what screen readers hear: the place only', () => {
    expect(placeAnnouncement('Run 7 (B)', 3)).toBe('Run 7 (B) is 3rd in the queue.');
    expect(placeAnnouncement('Run 7 (B)', 1)).toBe('Run 7 (B) is next in the queue.');
    expect(placeAnnouncement('Run 7 (B)', 22)).toBe('Run 7 (B) is 22nd in the queue.');
    expect(placeAnnouncement('Run 7 (B)', null)).toBe('Run 7 (B) is waiting in the queue.');
  });

  it('a requeued run, a resumed one', () => {
    expect(requeuedWords(400)).toBe('Its worker stopped; back in the queue, it will resume from step 400');
    expect(requeuedWords(null)).toBe('Its worker stopped; back in the queue, it will resume from its last checkpoint');
    expect(requeuedWords(0)).toBe('Its worker stopped; back in the queue, it will resume from the start (it had no checkpoint yet)');
    expect(resumedWords(1, 0)).toBeNull();
    expect(resumedWords(null, null)).toBeNull();
    expect(resumedWords(2, 1442)).toBe('Resumed from step 1442 (attempt 2)');
    expect(resumedWords(2, 0)).toBe('Started again (attempt 2)');
  });

  it('a cancel’s answer: 200 cancelled, 202 cancelling, a run already ended', () => {
    expect(cancelWords({ run_id: 2, status: 'cancelled' })).toBe('Cancelled');
    expect(cancelWords({ run_id: 1, status: 'cancelling' })).toBe('Stopping after this step…');
    expect(cancelWords({ run_id: 1, status: 'finished' })).toBe('Nothing to cancel: the run has already finished');
    expect(cancelWords({ run_id: 1, status: 'diverged' })).toBe('Nothing to cancel: the run has already ended (diverged)');
  });

  it('the queue’s refusals in words', () => {
    const mine = new ApiRefusal(429, 'too_many_jobs', 'training jobs: 2 of yours are queued or running', null);
    expect(submitErrorWords(mine)).toBe(
      'You already have as many training jobs queued or running as you may — cancel one, or try again when one has finished. (training jobs: 2 of yours are queued or running)',
    );
    expect(submitErrorWords(new ApiRefusal(429, 'queue_full', 'training queue: 8 jobs waiting', null, 30))).toBe(
      'The training queue is full — try again in 30 s. (training queue: 8 jobs waiting)',
    );
    expect(submitErrorWords(new ApiRefusal(429, 'queue_full', 'full', null))).toBe('The training queue is full — try again in a little while. (full)');
    expect(submitErrorWords(new ApiRefusal(400, 'bad_request', 'steps: too many', 'steps'))).toContain('[400 bad_request]');
  });
});

// ---- the poll -------------------------------------------------------------------------------------------

const run = (id: number, status: string, queue_position?: number): Run =>
  ({ id, status, ...(queue_position ? { queue_position } : {}), checkpoint: { path: '', step: 0 }, attempts: 0 }) as Run;

class FakeTimers {
  now = 0;
  private next = 1;
  pending = new Map<number, { at: number; f: () => void }>();
  setTimeout = (f: () => void, ms: number) => {
    const id = this.next++;
    this.pending.set(id, { at: this.now + ms, f });
    return id;
  };
  clearTimeout = (id: unknown) => void this.pending.delete(id as number);
  /** Moves the clock on `ms`, firing what falls due (and what that arms), letting answers settle between. */
  async advance(ms: number) {
    const end = this.now + ms;
    for (;;) {
      await flush();
      const due = [...this.pending.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.pending.delete(due[0]);
      this.now = Math.max(this.now, due[1].at);
      due[1].f();
    }
    this.now = end;
    await flush();
  }
}
const flush = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

describe('QueueWatch', () => {
  let t: FakeTimers;
  let asked: { path: string; at: number }[];
  let answer: (path: string) => RunList;
  let w: QueueWatch;
  beforeEach(() => {
    t = new FakeTimers();
    asked = [];
    answer = () => ({ runs: [run(5, 'running'), run(6, 'queued', 3), run(7, 'queued', 1)], queue: { queued: 7, running: 2, workers: 2 } });
    w = new QueueWatch(
      async (path) => {
        asked.push({ path, at: t.now });
        return answer(path);
      },
      t,
      () => t.now,
    );
  });
  afterEach(() => w.destroy());

  it('polls at once when a run is queued, then every 3 s at most, and stops when none is', async () => {
    expect(w.queue).toBeNull();
    await t.advance(10_000);
    expect(asked).toEqual([]); // nothing queued: no poll
    const t0 = t.now;
    w.watch([6], false);
    await t.advance(0);
    expect(asked).toEqual([{ path: '/api/runs', at: t0 }]);
    expect(w.position(6)).toBe(3);
    expect(w.queue).toEqual({ queued: 7, running: 2, workers: 2 });
    await t.advance(9_000);
    expect(asked.map((a) => a.at - t0)).toEqual([0, 3000, 6000, 9000]);
    // watching another run too does not poll sooner than 3 s after the last
    await t.advance(1000);
    w.watch([6, 7], false);
    await t.advance(1000);
    expect(asked).toHaveLength(4);
    await t.advance(1000);
    expect(asked.map((a) => a.at - t0)).toEqual([0, 3000, 6000, 9000, 12000]);
    expect(w.position(7)).toBe(1);
    w.watch([], false);
    await t.advance(30_000);
    expect(asked).toHaveLength(5);
    expect(w.position(6)).toBeNull();
  });

  it('no poll while the tab is hidden; the next one when it is visible again', async () => {
    w.watch([6], false);
    await t.advance(0);
    w.setVisible(false);
    await t.advance(20_000);
    expect(asked).toHaveLength(1);
    expect(w.polling).toBe(false);
    w.setVisible(true);
    await t.advance(0);
    expect(asked.map((a) => a.at)).toEqual([0, 20_000]);
  });

  it('signed in: the account’s list; the whole list when it lacks a watched run or answers 401', async () => {
    answer = (path) =>
      path === '/api/runs?mine=1'
        ? { runs: [run(6, 'queued', 2)], queue: { queued: 3, running: 1, workers: 1 } }
        : { runs: [run(6, 'queued', 2), run(9, 'queued', 3)], queue: { queued: 3, running: 1, workers: 1 } };
    w.watch([6], true);
    await t.advance(0);
    expect(asked.map((a) => a.path)).toEqual(['/api/runs?mine=1']);
    w.watch([6, 9], true);
    await t.advance(3000);
    expect(asked.map((a) => a.path)).toEqual(['/api/runs?mine=1', '/api/runs?mine=1', '/api/runs']);
    expect([w.position(6), w.position(9)]).toEqual([2, 3]);
    answer = (path) => {
      if (path === '/api/runs?mine=1') throw new ApiRefusal(401, 'unauthenticated', 'sign in', 'mine');
      return { runs: [run(6, 'queued', 1), run(9, 'queued', 2)], queue: { queued: 2, running: 1, workers: 1 } };
    };
    await t.advance(3000);
    expect(asked.slice(3).map((a) => a.path)).toEqual(['/api/runs?mine=1', '/api/runs']);
    expect([w.position(6), w.position(9)]).toEqual([1, 2]);
  });

  it('a failed poll keeps the last places and tries again 3 s later; a run that started has no place', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    w.watch([6], false);
    await t.advance(0);
    answer = () => {
      throw new TypeError('Failed to fetch');
    };
    await t.advance(3000);
    expect(w.position(6)).toBe(3);
    expect(warn).toHaveBeenCalledTimes(1);
    answer = () => ({ runs: [run(6, 'running')], queue: { queued: 0, running: 3, workers: 2 } });
    await t.advance(3000);
    expect(w.position(6)).toBeNull();
    expect(asked).toHaveLength(3);
    warn.mockRestore();
  });
});

// ---- a run's stream through the queue -------------------------------------------------------------------

function sse(events: [string, unknown][]): string {
  return events.map(([e, d]) => `event: ${e}\ndata: ${JSON.stringify(d)}\n\n`).join('');
}
const step = (n: number, loss: number) => ({ step: n, steps: 6, loss, accuracy: n / 6, lr: 1e-3, grad_norm: 1, tokens_per_s: 1, eta_s: 0 });

describe('RunStream and the queue', () => {
  let routes: Record<string, () => Response>;
  let deletes: string[];
  beforeEach(() => {
    deletes = [];
    routes = {};
    setFetch(async (url, init) => {
      if ((init?.method ?? 'GET') === 'DELETE') deletes.push(url);
      const r = routes[`${init?.method ?? 'GET'} ${url}`];
      return r ? r() : new Response('{}', { status: 404 });
    });
  });
  afterEach(() => setFetch((i, init) => fetch(i, init)));

  it('a requeued run: the checkpoint it resumes from, the steps after it re-sent and drawn once', async () => {
    // The first worker trained steps 1..5 (checkpoint at 3) and died; the next resumed from 3 and re-sent 4, 5.
    const events: [string, unknown][] = [
      ['status', { run_id: 4, status: 'queued' }],
      ['status', { run_id: 4, status: 'running', worker: 'w1', attempt: 1, resumes_from_step: 0 }],
      ...[1, 2, 3, 4, 5].map((n): [string, unknown] => ['step', step(n, 2 / n)]),
      ['status', { run_id: 4, status: 'queued', requeued: true }],
    ];
    let gotCheckpoint!: () => void;
    const asked = new Promise<void>((r) => (gotCheckpoint = r));
    let detail = 0;
    routes['GET /api/runs/4'] = () => {
      if (++detail === 2) gotCheckpoint();
      return new Response(JSON.stringify({ id: 4, label: 'web A', status: 'queued', checkpoint: { path: 'c', step: 3 }, attempts: 1 }));
    };
    routes['GET /api/runs/4/events'] = () => new Response(sse(events));
    const s = new RunStream();
    s.follow(4);
    await s.settled;
    await asked;
    await flush();
    expect([s.status, s.requeued, s.resumeStep]).toEqual(['queued', true, 3]);
    expect(s.steps.map((e) => e.step)).toEqual([1, 2, 3, 4, 5]);

    // The same run followed again from the start, now resumed and finished: 4 and 5 come twice, drawn once.
    const resumed: [string, unknown][] = [
      ...events,
      ['status', { run_id: 4, status: 'running', worker: 'w2', attempt: 2, resumes_from_step: 3 }],
      ...[4, 5, 6].map((n): [string, unknown] => ['step', step(n, 2 / n)]),
    ];
    routes['GET /api/runs/4/events'] = () => new Response(sse(resumed));
    s.follow(0);
    s.follow(4);
    await s.settled;
    expect(s.steps.map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(s.steps.map((e) => e.loss)).toEqual([1, 2, 3, 4, 5, 6].map((n) => 2 / n));
    expect([s.status, s.requeued, s.attempt, s.resumedFrom, s.latest?.step]).toEqual(['stream closed', false, 2, 3, 6]);
  });

  it('a status event draws the steps that came before it first (the status line never lags behind the stream)', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const enc = new TextEncoder();
    routes['GET /api/runs/5'] = () => new Response(JSON.stringify({ id: 5, label: 'x', status: 'queued', checkpoint: { path: '', step: 0 } }));
    routes['GET /api/runs/5/events'] = () =>
      new Response(
        new ReadableStream({
          async start(c) {
            c.enqueue(enc.encode(sse([['status', { run_id: 5, status: 'running', attempt: 1 }], ['step', step(1, 2)], ['step', step(2, 1)], ['status', { run_id: 5, status: 'queued', requeued: true }]])));
            await held;
            c.close();
          },
        }),
      );
    const s = new RunStream();
    s.follow(5);
    await flush();
    // well before the 100 ms batch: the steps are drawn as the requeue comes
    expect([s.status, s.requeued, s.latest?.step, s.steps.length]).toEqual(['queued', true, 2, 2]);
    release();
    await s.settled;
  });

  it('the checkpoint of a replayed requeue is not taken (the run is no longer queued)', async () => {
    routes['GET /api/runs/8'] = () => new Response(JSON.stringify({ id: 8, label: 'x', status: 'finished', checkpoint: { path: 'c', step: 6 } }));
    routes['GET /api/runs/8/events'] = () => new Response(sse([['status', { run_id: 8, status: 'queued', requeued: true }]]));
    const s = new RunStream();
    s.follow(8);
    await s.settled;
    await flush();
    expect([s.status, s.requeued, s.resumeStep]).toEqual(['queued', true, null]);
  });

  it('cancel: a queued run says “Cancelled” at once (200), a running one “Stopping after this step…” (202) until it ends', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const enc = new TextEncoder();
    const stream = (first: [string, unknown][], then: [string, unknown][]) => () =>
      new Response(
        new ReadableStream({
          async start(c) {
            c.enqueue(enc.encode(sse(first)));
            await held;
            c.enqueue(enc.encode(sse(then)));
            c.close();
          },
        }),
      );
    routes['GET /api/runs/2'] = () => new Response(JSON.stringify({ id: 2, label: 'q', status: 'queued' }));
    routes['GET /api/runs/2/events'] = stream([['status', { run_id: 2, status: 'queued' }]], [['end', { run_id: 2, status: 'cancelled', steps: 0 }]]);
    routes['DELETE /api/runs/2'] = () => new Response(JSON.stringify({ run_id: 2, status: 'cancelled' }), { status: 200 });
    const q = new RunStream();
    q.follow(2);
    await flush();
    expect(q.status).toBe('queued');
    await q.cancel();
    expect([q.status, q.cancelNote, q.cancelling]).toEqual(['cancelled', 'Cancelled', false]);
    expect(deletes).toEqual(['/api/runs/2']);

    routes['GET /api/runs/3'] = () => new Response(JSON.stringify({ id: 3, label: 'r', status: 'running' }));
    routes['GET /api/runs/3/events'] = stream(
      [['status', { run_id: 3, status: 'running', attempt: 1, resumes_from_step: 0 }], ['step', step(1, 2)]],
      [['step', step(2, 1)], ['end', { run_id: 3, status: 'cancelled', steps: 2, final: { loss: 1, accuracy: 0.5 } }]],
    );
    routes['DELETE /api/runs/3'] = () => new Response(JSON.stringify({ run_id: 3, status: 'cancelling' }), { status: 202 });
    const r = new RunStream();
    r.follow(3);
    await flush();
    await r.cancel();
    expect([r.status, r.cancelNote, r.cancelling]).toEqual(['running', 'Stopping after this step…', true]);
    release();
    await Promise.all([q.settled, r.settled]);
    expect([r.status, r.cancelNote, r.cancelling, r.end?.final?.loss]).toEqual(['cancelled', 'Cancelled', false, 1]);
    // the queued run's end (no `final`: it never trained) changes nothing
    expect([q.status, q.cancelNote, q.end?.final]).toEqual(['cancelled', 'Cancelled', undefined]);
  });
});
