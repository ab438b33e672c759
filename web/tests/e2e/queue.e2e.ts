// The shared training queue on the Train page, against a server of its own with `--max-jobs 1` (one job trains
// at a time): a run submitted from the page behind a long job and an account's two shows its place in words,
// updated by the poll and announced only when the place changes; Cancel says "Cancelled" at once. Then a second
// server on the same store trains the page's run and is killed (SIGKILL): the run goes back to the queue, the
// page says it will resume from the checkpoint's step, and when it resumes the re-sent steps are drawn once;
// Cancel on the running run says "Stopping after this step…", then "Cancelled".
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launch, openPage, screenshot, type Browser, type WatchedPage } from './browser';
import { api, expectNoErrors, expectText, horizontalOverflow, params } from './helpers';
import { addUser, blocklabBinary, scratch, startServer, type Served } from './server';
import { queueWords } from '../../src/lib/queue';
import type { RunList } from '../../src/lib/api';

const binary = blocklabBinary();
const work = scratch('blocklab-queue-test-');
let server: Served;
let worker: Served | null = null;
let base = '';
let browser: Browser;
let w: WatchedPage;
const ANN = { name: 'ann', password: 'ann-pass-' + Math.random().toString(36).slice(2, 10) };
const job = (label: string, steps = 20_000, config: object = { d_model: 16, n_heads: 4, d_ff: 32, n_layers: 1 }) => ({
  task: 'copy',
  steps,
  lr: 0.001,
  seed: 0,
  label,
  config,
});
// The long job must outlast both tests on a fast machine too (a 16-wide one layer did 20 000 steps in ~20 s on
// CI's): 128 wide (about 28 000 GFLOP, under the server's 40 000 per job), so its 20 000 steps take minutes
// anywhere; the second test cancels it.
const LONG = { d_model: 128, n_heads: 4, d_ff: 512, n_layers: 1 };

/** A signed-in account for API calls: the session cookie and the CSRF token. */
async function signIn(name: string, password: string) {
  const res = await fetch(base + '/api/auth/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: name, password }),
  });
  if (!res.ok) throw new Error(`login ${name}: ${res.status} ${await res.text()}`);
  const cookie = res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  const { csrf_token } = (await res.json()) as { csrf_token: string };
  const call = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(base + path, {
      method,
      headers: { Cookie: cookie, 'X-CSRF-Token': csrf_token, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
    return JSON.parse(text);
  };
  return call;
}

async function del(path: string) {
  const r = await fetch(base + path, { method: 'DELETE' });
  return { status: r.status, json: await r.json() };
}

async function until<T>(what: string, f: () => Promise<T | null | undefined | false>, timeout = 30_000, every = 200): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() - t0 > timeout) throw new Error(`${what}: not within ${timeout} ms`);
    await new Promise((r) => setTimeout(r, every));
  }
}

async function waitState(side: string, states: string[], timeout = 60_000) {
  await w.page.waitForFunction(
    ([s, st]) => (st as string[]).includes(document.querySelector(`[data-testid="state-${s}"]`)?.textContent ?? ''),
    [side, states] as const,
    { timeout, polling: 100 },
  );
}

/** The step the page's status line shows (the latest step event). */
async function shownStep(side: string): Promise<number> {
  const text = await w.page.locator(`[data-testid="status-${side}"]`).innerText();
  const m = /step (\d+)\/\d+/.exec(text);
  return m ? Number(m[1]) : 0;
}

/** Waits until the page's queue line for the run says what GET /api/runs says now (place and queue). */
async function expectQueueLine(side: string, id: number, timeout = 15_000): Promise<string> {
  let last = '';
  return until(
    `queue-${side} to match GET /api/runs`,
    async () => {
      const list = await api<RunList>(base, '/api/runs');
      const pos = list.runs.find((r) => r.id === id)?.queue_position ?? null;
      last = queueWords(pos, list.queue);
      const shown = (await w.page.locator(`[data-testid="queue-${side}"]`).textContent())?.trim();
      return shown === last ? last : null;
    },
    timeout,
  ).catch(async (e) => {
    const shown = await w.page.locator(`[data-testid="queue-${side}"]`).textContent();
    throw new Error(`${(e as Error).message}: expected "${last}", the page shows "${shown}"`);
  });
}

beforeAll(async () => {
  addUser(binary, work.dir, work.db, ANN.name, 'student', ANN.password);
  server = await startServer(binary, work.dir, work.db, ['--max-jobs', '1']);
  base = server.baseUrl;
  browser = await launch();
});
afterAll(async () => {
  await browser?.close();
  await worker?.stop();
  await server?.stop();
  work.remove();
});

describe('the training queue on the Train page (--max-jobs 1)', () => {
  let long = 0;
  let ann: Awaited<ReturnType<typeof signIn>>;
  const annRuns: number[] = [];

  it('a queued run shows its place, updated every few seconds, announced when it changes; Cancel says “Cancelled”', async () => {
    long = (await api(base, '/api/runs', job('queue test: the long job', 20_000, LONG))).run_id;
    await until('the long job to start', async () => (await api(base, `/api/runs/${long}`)).status === 'running');
    ann = await signIn(ANN.name, ANN.password);
    for (const i of [1, 2]) annRuns.push((await ann('POST', '/api/runs', job(`ann ${i}`))).run_id);

    w = await openPage(browser, base, '?page=train&steps=40&dmodel=16&a_layers=1');
    const polls: number[] = [];
    w.page.on('request', (r) => {
      if (/\/api\/runs(\?mine=1)?$/.test(r.url()) && r.method() === 'GET') polls.push(Date.now());
    });
    await w.page.click('[data-testid="train-a"]');
    await waitState('a', ['queued']);
    const id = Number(params(w.page).get('run_a'));
    expect(id).toBeGreaterThan(long);
    // ann's two jobs first (she has none running), then the page's
    await expectText(w.page, '[data-testid="queue-a"]', 'Waiting: 3rd in the queue — 3 jobs waiting, 1 training on 1 worker');
    expect(await w.page.getAttribute('[data-testid="queue-a"]', 'data-position')).toBe('3');
    await expectText(w.page, '[data-testid="announce-a"]', `Run ${id} (A) is 3rd in the queue.`);
    expect(await w.page.getAttribute('[data-testid="announce-a"]', 'aria-live')).toBe('polite');

    // Every change of the live region's text from now on.
    await w.page.evaluate(() => {
      const el = document.querySelector('[data-testid="announce-a"]')!;
      const seen: string[] = [];
      (window as unknown as { announced: string[] }).announced = seen;
      new MutationObserver(() => seen.push(el.textContent ?? '')).observe(el, { childList: true, characterData: true, subtree: true });
    });
    await ann('DELETE', `/api/runs/${annRuns[0]}`);
    await expectText(w.page, '[data-testid="queue-a"]', 'Waiting: 2nd in the queue — 2 jobs waiting, 1 training on 1 worker', 10_000);
    await expectQueueLine('a', id);
    const n = polls.length;
    await w.page.waitForTimeout(7000); // two more polls: the same place, nothing announced
    expect(polls.length - n).toBeGreaterThanOrEqual(2);
    const gaps = polls.slice(1).map((t, i) => t - polls[i]);
    expect(Math.min(...gaps), `poll gaps ${gaps.join(', ')} ms`).toBeGreaterThanOrEqual(2900);
    expect(await w.page.evaluate(() => (window as unknown as { announced: string[] }).announced.filter((t) => t.trim()))).toEqual([
      `Run ${id} (A) is 2nd in the queue.`,
    ]);

    // a 360 px phone: the line wraps, nothing scrolls sideways
    await w.page.setViewportSize({ width: 360, height: 740 });
    expect(await horizontalOverflow(w.page)).toBeLessThanOrEqual(0);
    const box = (await w.page.locator('[data-testid="queue-a"]').boundingBox())!;
    expect(box.x + box.width).toBeLessThanOrEqual(360);
    await screenshot(w.page, 'train-queued-360');

    // Cancel from the keyboard: a queued run is cancelled at once (200), the focus goes back to Train
    await w.page.focus('[data-testid="cancel-a"]');
    await w.page.keyboard.press('Enter');
    await expectText(w.page, '[data-testid="cancel-note-a"]', 'Cancelled', 5000);
    await waitState('a', ['cancelled'], 5000);
    await expectText(w.page, '[data-testid="announce-a"]', `Run ${id} (A): Cancelled.`);
    expect(await w.page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).toBe('train-a');
    expect(await w.page.locator('[data-testid="queue-a"]').count()).toBe(0);
    const run = await api(base, `/api/runs/${id}`);
    expect([run.status, run.steps_done, run.attempts]).toEqual(['cancelled', 0, 0]);
    const after = polls.length;
    await w.page.waitForTimeout(4000); // nothing of the page is queued: no poll
    expect(polls.length).toBe(after);
    await w.page.setViewportSize({ width: 1280, height: 800 });
    await ann('DELETE', `/api/runs/${annRuns[1]}`);
    expectNoErrors(w.errors);
  });

  it('a run whose worker died goes back to the queue, resumes from its checkpoint, and its re-sent steps are drawn once', async () => {
    const STEPS = 2000; // a checkpoint every 200 steps
    await w.page.fill('[data-testid="steps"]', String(STEPS));
    await w.page.press('[data-testid="steps"]', 'Tab');
    await w.page.click('[data-testid="train-a"]');
    await waitState('a', ['queued']);
    const id = Number(params(w.page).get('run_a'));
    await expectText(w.page, '[data-testid="queue-a"]', 'Waiting: 1st in the queue (next to start) — 1 job waiting, 1 training on 1 worker');
    // a second server on the same store: a free worker, it takes the page's run
    worker = await startServer(binary, work.dir, work.db, ['--max-jobs', '1']);
    await waitState('a', ['running'], 30_000);
    // killed between two checkpoints (as the store has it), so that steps after its checkpoint will come again
    let atKill = { steps_done: 0, checkpoint: { step: 0 } };
    await until(
      'the run 20 to 150 steps past a checkpoint',
      async () => {
        const r = (await api<RunList>(base, '/api/runs')).runs.find((x) => x.id === id);
        if (!r || r.checkpoint.step < 200) return false;
        atKill = r;
        const past = r.steps_done - r.checkpoint.step;
        return past >= 20 && past <= 150;
      },
      90_000,
      50,
    );
    await worker.stop('SIGKILL');
    worker = null;
    const before = await shownStep('a');
    // its lease runs out (20 s), the server puts the run back in the queue
    await waitState('a', ['queued'], 60_000);
    const seenBefore = Math.max(before, await shownStep('a'));
    const ckpt = (await api(base, `/api/runs/${id}`)).checkpoint.step;
    expect(ckpt % 200).toBe(0);
    expect(ckpt).toBeGreaterThanOrEqual(200);
    expect(ckpt, `killed at ${JSON.stringify(atKill)}`).toBeGreaterThanOrEqual(atKill.checkpoint.step);
    expect(seenBefore, `killed at ${JSON.stringify(atKill)}, checkpoint ${ckpt}`).toBeGreaterThan(ckpt); // the steps after it will come again
    // the stream is in order: every step the store had before the kill came before the requeue
    expect(seenBefore).toBeGreaterThanOrEqual(atKill.steps_done);
    await expectText(w.page, '[data-testid="requeued-a"]', `Its worker stopped; back in the queue, it will resume from step ${ckpt}.`);
    await expectText(w.page, '[data-testid="announce-a"]', `Run ${id} (A): Its worker stopped; back in the queue, it will resume from step ${ckpt}.`);
    const line = await expectQueueLine('a', id);
    expect(line).toMatch(/^Waiting: 1st in the queue \(next to start\) — 1 job waiting, \d+ training on \d+ workers?$/);
    await screenshot(w.page, 'train-requeued');

    // the long job ends: the one worker left resumes the page's run from the checkpoint
    expect((await del(`/api/runs/${long}`)).json.status).toBe('cancelling');
    await waitState('a', ['running'], 30_000);
    await expectText(w.page, '[data-testid="resumed-a"]', `Resumed from step ${ckpt} (attempt 2).`);
    await until('the resumed run past the steps drawn before', async () => (await shownStep('a')) > seenBefore + 20, 60_000);

    // Cancel while it trains: 202, "Stopping after this step…", then "Cancelled" with its end
    await w.page.evaluate(() => {
      const seen: string[] = [];
      (window as unknown as { notes: string[] }).notes = seen;
      const status = document.querySelector('[data-testid="status-a"]')!;
      new MutationObserver(() => {
        const t = status.querySelector('[data-testid="cancel-note-a"]')?.textContent ?? '';
        if (t && seen.at(-1) !== t) seen.push(t);
      }).observe(status, { childList: true, characterData: true, subtree: true });
    });
    await w.page.click('[data-testid="cancel-a"]');
    await waitState('a', ['cancelled'], 30_000);
    await expectText(w.page, '[data-testid="cancel-note-a"]', 'Cancelled');
    expect(await w.page.evaluate(() => (window as unknown as { notes: string[] }).notes)).toEqual(['Stopping after this step…', 'Cancelled']);

    const run = await api(base, `/api/runs/${id}`);
    expect(run.attempts).toBe(2);
    expect(run.steps_done).toBeGreaterThan(seenBefore);
    const steps = (run.history as { step: number }[]).map((h) => h.step);
    expect(steps).toEqual(Array.from({ length: run.steps_done }, (_, i) => i + 1));
    // the loss curve: one point per step, none twice (d3's path: M, then one L per further point)
    const d = (await w.page.getAttribute('[data-testid="loss-chart"] svg.plot path', 'd')) ?? '';
    expect(d.split('L').length).toBe(run.steps_done);
    const xs = d.split(/[ML]/).filter(Boolean).map((p) => Number(p.split(',')[0]));
    expect(xs.every((x, i) => i === 0 || x > xs[i - 1])).toBe(true);
    // the page's last numbers are the store's
    expect(await shownStep('a')).toBe(run.steps_done);
    expectNoErrors(w.errors);
  }, 240_000);
});
