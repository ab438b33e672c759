// Seed 003's copy task trained live: presets, two runs over SSE on one chart, cancel, exports, replay from the URL.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { launch, openPage, screenshot, type Browser, type WatchedPage } from './browser';
import { api, expectNoErrors, expectNum, params, press } from './helpers';
import { fmt } from '../../src/lib/format';
import { parseSafetensors } from '../../src/lib/safetensors';
import { recentEta } from '../../src/lib/eta';

const base = inject('baseUrl');
let browser: Browser;
let w: WatchedPage;
const STEPS = 40;

async function waitState(side: string, states: string[], timeout = 90_000) {
  await w.page.waitForFunction(
    ([s, st]) => (st as string[]).includes(document.querySelector(`[data-testid="state-${s}"]`)?.textContent ?? ''),
    [side, states] as const,
    { timeout, polling: 100 },
  );
}

beforeAll(async () => {
  browser = await launch();
  w = await openPage(browser, base, `?page=train&steps=${STEPS}&dmodel=16`);
});
afterAll(async () => browser?.close());

describe('Train (seed 003)', () => {
  it('presets set up the seed’s exercises in the URL', async () => {
    await w.page.click('[data-testid="preset-residual"]');
    expect(params(w.page).get('preset')).toBe('residual');
    expect(params(w.page).get('b_res')).toBe('0');
    expect(await w.page.isChecked('[data-testid="b-res"]')).toBe(false);
    expect(await w.page.inputValue('[data-testid="a-layers"]')).toBe('8');
    await w.page.click('[data-testid="preset-layernorm"]');
    expect(await w.page.inputValue('[data-testid="b-norm"]')).toBe('none');
    expect(await w.page.inputValue('[data-testid="a-place"]')).toBe('post');
    await w.page.click('[data-testid="preset-prepost"]');
    expect(await w.page.inputValue('[data-testid="a-layers"]')).toBe('12');
    expect(await w.page.inputValue('[data-testid="b-place"]')).toBe('post');
    // editing a field makes it a custom configuration
    await w.page.fill('[data-testid="a-layers"]', '2');
    await w.page.press('[data-testid="a-layers"]', 'Tab');
    await w.page.fill('[data-testid="b-layers"]', '2');
    await w.page.press('[data-testid="b-layers"]', 'Tab');
    await w.page.selectOption('[data-testid="b-act"]', 'relu');
    await w.page.fill('[data-testid="b-warm"]', '10');
    await w.page.press('[data-testid="b-warm"]', 'Tab');
    expect(params(w.page).get('preset')).toBe('custom');
    expect(params(w.page).get('b_act')).toBe('relu');
  });

  it('trains A and B live on one chart; the numbers are the run store’s', async () => {
    const t0 = Date.now();
    await w.page.click('[data-testid="train-both"]');
    await waitState('a', ['finished', 'diverged']);
    await waitState('b', ['finished', 'diverged']);
    console.log(`two runs of ${STEPS} steps trained in ${Date.now() - t0} ms`);
    const ids = ['a', 'b'].map((s) => Number(params(w.page).get(`run_${s}`)));
    expect(ids.every((id) => id > 0)).toBe(true);
    for (const [i, side] of ['a', 'b'].entries()) {
      const run = await api(base, `/api/runs/${ids[i]}`);
      expect(run.steps_done).toBe(STEPS);
      expect(run.config.n_layers).toBe(2);
      await expectNum(w.page, `final-loss-${side}`, run.final.loss);
      await expectNum(w.page, `final-acc-${side}`, run.final.accuracy);
      await expectNum(w.page, `loss-${side}`, run.history.at(-1).loss);
      await expectNum(w.page, `acc-${side}`, run.history.at(-1).accuracy);
    }
    const runB = await api(base, `/api/runs/${ids[1]}`);
    expect(runB.config.activation).toBe('relu');
    expect(runB.options.warmup).toBe(10);
    // the loss chart: one line per run; the keyboard readout at the last step shows both runs' losses
    const runA = await api(base, `/api/runs/${ids[0]}`);
    await expect(w.page.locator('[data-testid="loss-chart"] svg.plot path').count()).resolves.toBe(2);
    await w.page.focus('[data-testid="loss-chart"] svg.plot');
    await press(w.page, 'End', 1);
    const readout = await w.page.locator('[data-testid="loss-chart-readout"]').innerText();
    expect(readout).toContain(`step ${STEPS}:`);
    expect(readout).toContain(`A (run ${ids[0]}): ${fmt(runA.history.at(-1).loss)}`);
    expect(readout).toContain(`B (run ${ids[1]}): ${fmt(runB.history.at(-1).loss)}`);
    await screenshot(w.page, 'train');
  });

  it('exports the run: CSV of its metrics and the model as safetensors', async () => {
    const id = Number(params(w.page).get('run_a'));
    const csvHref = await w.page.getAttribute('[data-testid="csv-a"]', 'href');
    expect(csvHref).toBe(`/api/runs/${id}/export?format=csv`);
    const [download] = await Promise.all([w.page.waitForEvent('download'), w.page.click('[data-testid="csv-a"]')]);
    expect(download.suggestedFilename()).toBe(`run-${id}.csv`);
    const csv = await (await fetch(base + csvHref)).text();
    const lines = csv.trim().split('\n');
    expect(lines[0]).toBe('step,loss,accuracy,lr,grad_norm,wall_s');
    expect(lines).toHaveLength(STEPS + 1);
    const modelHref = await w.page.getAttribute('[data-testid="model-a"]', 'href');
    expect(modelHref).toBe(`/api/runs/${id}/model`);
    const res = await fetch(base + modelHref);
    expect(res.status).toBe(200);
    const file = parseSafetensors(await res.arrayBuffer());
    expect(file.tensors.get('layers.0.linear1.weight')!.shape).toEqual([32, 16]);
  });

  it('a shared URL replays the finished runs', async () => {
    const ids = ['a', 'b'].map((s) => Number(params(w.page).get(`run_${s}`)));
    await w.page.reload();
    await waitState('a', ['finished', 'diverged']);
    await waitState('b', ['finished', 'diverged']);
    const run = await api(base, `/api/runs/${ids[1]}`);
    await expectNum(w.page, 'final-loss-b', run.final.loss);
    await expect(w.page.locator('[data-testid="acc-chart"] svg.plot path').count()).resolves.toBe(2);
  });

  it('the time left follows the latest steps’ pace, not the mean since the start (a stand-in stream that speeds up)', async () => {
    // The engine's step events for a run that trained 60 steps at 0.2 s, then 60 at 0.02 s (the other run ended):
    // eta_s as the engine computes it, wall / done × left. The stream stays open: the run is still training.
    const page = await w.page.context().newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.addInitScript(() => {
      const RUN = 777;
      const STEPS = 400;
      let wall = 0;
      const lines = [`event: status\ndata: ${JSON.stringify({ run_id: RUN, status: 'running', worker: 'w', attempt: 1, resumes_from_step: 0 })}\n\n`];
      for (let step = 1; step <= 120; step++) {
        wall += step <= 60 ? 0.2 : 0.02;
        const ev = { step, steps: STEPS, loss: 2, accuracy: 0.1, lr: 0.001, grad_norm: 1, tokens_per_s: (step * 64) / wall, eta_s: (wall / step) * (STEPS - step) };
        lines.push(`event: step\ndata: ${JSON.stringify(ev)}\n\n`);
      }
      const real = window.fetch.bind(window);
      window.fetch = (input: RequestInfo | URL, init?: RequestInit) => {
        const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
        if (url.endsWith(`/api/runs/${RUN}/events`)) {
          const body = new ReadableStream({ start: (c) => c.enqueue(new TextEncoder().encode(lines.join(''))) });
          return Promise.resolve(new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } }));
        }
        if (url.endsWith(`/api/runs/${RUN}`))
          return Promise.resolve(new Response(JSON.stringify({ id: RUN, label: 'stand-in', status: 'running' }), { headers: { 'Content-Type': 'application/json' } }));
        return real(input, init);
      };
    });
    await page.goto(`${base}/?page=train&run_a=777`);
    await page.waitForSelector('[data-testid="eta-a"][data-step="120"]', { timeout: 10_000 });
    const shown = await page.evaluate(() => {
      const el = document.querySelector('[data-testid="eta-a"]')!;
      return { raw: Number(el.getAttribute('data-raw')), source: el.getAttribute('data-source'), text: el.querySelector('.num')!.childNodes[0].textContent };
    });
    // 280 steps left at 0.02 s: 5.6 s — the engine's mean-pace eta_s says 30.8 s
    expect(shown.source).toBe('recent');
    expect(shown.raw).toBeCloseTo(5.6, 6);
    expect(shown.text).toBe('5.6 s left');
    await page.focus('[data-testid="eta-a"] .num');
    await expect(page.locator('[data-testid="eta-a"] .tip').innerText()).resolves.toMatch(/the pace of the last 20 steps.*eta_s.*says 31 s/s);
    await screenshot(page, 'train-eta');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('cancels a running job; while it trains, the time left is the recent pace of the engine’s clock', async () => {
    await w.page.fill('[data-testid="steps"]', '2000');
    await w.page.press('[data-testid="steps"]', 'Tab');
    await w.page.click('[data-testid="train-a"]');
    await waitState('a', ['running']);
    // the page's time left against the run's history (the engine's wall_s at each step), over the same steps
    await w.page.waitForFunction(() => Number(document.querySelector('[data-testid="eta-a"][data-source="recent"]')?.getAttribute('data-step') ?? 0) >= 30, undefined, { timeout: 60_000, polling: 50 });
    const eta = await w.page.evaluate(() => {
      const el = document.querySelector('[data-testid="eta-a"]')!;
      return { raw: Number(el.getAttribute('data-raw')), step: Number(el.getAttribute('data-step')) };
    });
    const hist = (await api(base, `/api/runs/${params(w.page).get('run_a')}`)).history as { step: number; wall_s: number }[];
    const clock = hist.filter((h) => h.step <= eta.step).map((h) => ({ step: h.step, wall: h.wall_s }));
    const want = recentEta(clock, 2000 - eta.step)!;
    expect(want).not.toBeNull();
    expect(eta.raw).toBeCloseTo(want.eta, 4);
    await w.page.click('[data-testid="cancel-a"]');
    await waitState('a', ['cancelled'], 30_000);
    const run = await api(base, `/api/runs/${params(w.page).get('run_a')}`);
    expect(run.status).toBe('cancelled');
    expect(run.steps_done).toBeLessThan(2000);
    expectNoErrors(w.errors);
  });
});
