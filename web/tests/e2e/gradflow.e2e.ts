// Seeds 003 and 004: gradient flow with / without residuals, up to 100 layers, norm and placement, log-scale chart,
// the drift table.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { launch, openPage, screenshot, type Browser, type WatchedPage } from './browser';
import { api, choose, expectNoErrors, expectNum, expectText, params, press, waitReady } from './helpers';
import { driftLayers, driftStatus } from '../../src/lib/chart';
import { fmt } from '../../src/lib/format';
import type { GradFlowResponse } from '../../src/lib/api';

const base = inject('baseUrl');
let browser: Browser;
let w: WatchedPage;
const flow = (n_layers: number, residual: boolean, norm = 'layernorm', placement = 'pre') =>
  api<GradFlowResponse>(base, '/api/gradient-flow', { n_layers, residual, norm, placement, batch: 4, seq_len: 20, seed: 0 });

async function expectFlow(g: GradFlowResponse) {
  const L = g.layers.length;
  await expectNum(w.page, 'grad-first', g.layers[0].grad_norm_resid);
  await expectNum(w.page, 'grad-last', g.layers[L - 1].grad_norm_resid);
  await expectNum(w.page, 'grad-ratio', g.layers[0].grad_norm_resid! / g.layers[L - 1].grad_norm_resid!);
  await expectNum(w.page, 'loss', g.loss);
  for (const l of driftLayers(L)) {
    const r = g.layers[l - 1];
    await expectNum(w.page, `drift-mean-${l}`, r.act_mean);
    await expectNum(w.page, `drift-std-${l}`, r.act_std);
    await expectText(w.page, `[data-testid="drift-status-${l}"]`, driftStatus(r.act_mean, r.act_std));
  }
}

beforeAll(async () => {
  browser = await launch();
  w = await openPage(browser, base, '?page=gradflow');
});
afterAll(async () => browser?.close());

describe('Gradient flow (seeds 003, 004)', () => {
  it('draws 24 layers with residuals and the drift table, as the engine measures them', async () => {
    await waitReady(w.page);
    await expectFlow(await flow(24, true));
    // two series (the other setting dashed), a log axis with decade ticks
    await expect(w.page.locator('[data-testid="gradchart"] path[stroke-dasharray]').count()).resolves.toBe(1);
    const ticks = await w.page.locator('[data-testid="gradchart"] text.tick').allTextContents();
    expect(ticks.some((t) => /^1e-\d+$/.test(t))).toBe(true);
    await screenshot(w.page, 'gradflow');
  });

  it('without residuals, then 100 layers with the slider (keyboard End)', async () => {
    await choose(w.page, 'residual', 'off');
    await waitReady(w.page);
    expect(params(w.page).get('residual')).toBe('0');
    await expectFlow(await flow(24, false));
    await w.page.focus('[data-testid="layers"]');
    await press(w.page, 'End', 1);
    await waitReady(w.page);
    expect(params(w.page).get('layers')).toBe('100');
    const g = await flow(100, false);
    await expectFlow(g);
    // the chart's readout, from the keyboard: layer 1 of both series
    await w.page.focus('[data-testid="gradchart"] svg.plot');
    await press(w.page, 'Home', 1);
    const other = await flow(100, true);
    const readout = await w.page.locator('[data-testid="gradchart-readout"]').innerText();
    expect(readout).toContain(`layer 1:`);
    expect(readout).toContain(`without residuals: ${fmt(g.layers[0].grad_norm_resid)}`);
    expect(readout).toContain(`with residuals: ${fmt(other.layers[0].grad_norm_resid)}`);
    await screenshot(w.page, 'gradflow-100-no-residual');
  });

  it('norm and placement choices, parameter gradients, all layers in the table', async () => {
    await choose(w.page, 'norm', 'none');
    await choose(w.page, 'placement', 'post');
    await w.page.focus('[data-testid="layers"]');
    await press(w.page, 'PageDown', 1);
    await waitReady(w.page);
    const n = Number(params(w.page).get('layers'));
    expect(n).toBeLessThan(100);
    const g = await flow(n, false, 'none', 'post');
    await expectFlow(g);
    await w.page.check('[data-testid="drift-all"]');
    await expect(w.page.locator('[data-testid="drift"] tbody tr').count()).resolves.toBe(n);
    await expectNum(w.page, `drift-std-${n - 1}`, g.layers[n - 2].act_std);
    await choose(w.page, 'metric', 'params');
    await waitReady(w.page);
    await expectNum(w.page, 'grad-first', g.layers[0].grad_norm_params);
    await w.page.uncheck('[data-testid="compare"]');
    await expect(w.page.locator('[data-testid="gradchart"] path[stroke-dasharray]').count()).resolves.toBe(0);
    expectNoErrors(w.errors);
  });

  it('while new curves are computed, the curves shown keep the labels of the setting they were measured for', async () => {
    const u = await openPage(browser, base, '?page=gradflow');
    await waitReady(u.page);
    const legend = () =>
      u.page.$$eval('[data-testid="gradchart"] .legend .key', (keys) =>
        keys.map((k) => `${k.querySelector('line[stroke-dasharray]') ? 'dashed' : 'solid'}: ${k.textContent?.trim()}`),
      );
    expect(await legend()).toEqual(['solid: with residuals', 'dashed: without residuals']);
    const withRes = await flow(24, true);
    await expectNum(u.page, 'grad-first', withRes.layers[0].grad_norm_resid);
    // the answers for the new setting are held back: the page still shows the old ones
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    await u.page.route('**/api/gradient-flow', async (route) => {
      await held;
      await route.continue();
    });
    await choose(u.page, 'residual', 'off');
    await u.page.waitForSelector('[data-testid="widget"][data-status="pending"]');
    await u.page.waitForTimeout(400);
    await expectNum(u.page, 'grad-first', withRes.layers[0].grad_norm_resid);
    expect(await legend(), 'the with-residual curve labelled by the control, not by its answer').toEqual(['solid: with residuals', 'dashed: without residuals']);
    await expect(u.page.locator('[data-testid="drift-config"]').innerText()).resolves.toBe('with residuals, layernorm, pre');
    release();
    await waitReady(u.page);
    const without = await flow(24, false);
    await expectNum(u.page, 'grad-first', without.layers[0].grad_norm_resid);
    expect(await legend()).toEqual(['solid: without residuals', 'dashed: with residuals']);
    await expect(u.page.locator('[data-testid="drift-config"]').innerText()).resolves.toBe('without residuals, layernorm, pre');
    expectNoErrors(u.errors);
    await u.page.close();
  });
});
