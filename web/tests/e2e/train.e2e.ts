// Seed 003's copy task trained live: presets, two runs over SSE on one chart, cancel, exports, replay from the URL.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { launch, openPage, screenshot, type Browser, type WatchedPage } from './browser';
import { api, expectNoErrors, expectNum, params, press } from './helpers';
import { fmt } from '../../src/lib/format';
import { parseSafetensors } from '../../src/lib/safetensors';

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

  it('cancels a running job', async () => {
    await w.page.fill('[data-testid="steps"]', '2000');
    await w.page.press('[data-testid="steps"]', 'Tab');
    await w.page.click('[data-testid="train-a"]');
    await waitState('a', ['running']);
    await w.page.click('[data-testid="cancel-a"]');
    await waitState('a', ['cancelled'], 30_000);
    const run = await api(base, `/api/runs/${params(w.page).get('run_a')}`);
    expect(run.status).toBe('cancelled');
    expect(run.steps_done).toBeLessThan(2000);
    expectNoErrors(w.errors);
  });
});
