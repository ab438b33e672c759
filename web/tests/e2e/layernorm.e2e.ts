// Seeds 004 and 003: LayerNorm step by step with the seed's tokens and exact numbers, γ / β / ε, RMSNorm,
// BatchNorm vs LayerNorm live.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { launch, openPage, screenshot, type Browser, type WatchedPage } from './browser';
import { api, choose, expectNoErrors, expectNum, numText, params, press, waitReady } from './helpers';
import type { BatchNormResponse, LayerNormResponse, RmsNormResponse } from '../../src/lib/api';

const base = inject('baseUrl');
const SEED = [
  [0.1, 2.3, -1.2],
  [5.0, 5.1, 4.9],
];
let browser: Browser;
let w: WatchedPage;
const fill = (n: number) => [n, n, n];
const ln = (x: number[][], gamma = 1, beta = 0, eps = 1e-5, row = 0) =>
  api<LayerNormResponse>(base, '/api/compute/layernorm', { x, gamma: fill(gamma), beta: fill(beta), eps, row });

beforeAll(async () => {
  browser = await launch();
  w = await openPage(browser, base, '?page=layernorm');
});
afterAll(async () => browser?.close());

describe('LayerNorm step by step (seeds 004, 003)', () => {
  it('shows the seed’s tokens with the exact numbers: σ = 1.4445 (not 1.5) and 0.08165', async () => {
    await waitReady(w.page);
    // the literal values the seed pages are corrected to
    await expect.poll(() => numText(w.page, 'summary-sigma-0')).toBe('1.4445');
    expect(await numText(w.page, 'summary-sigma-1')).toBe('0.08165');
    expect(await numText(w.page, 'summary-mean-0')).toBe('0.4');
    expect(await numText(w.page, 'summary-mean-1')).toBe('5.0');
    // and they are the engine's: σ = √var of the API's biased variance, √(var + ε) its std
    const r = await ln(SEED);
    for (const i of [0, 1]) {
      await expectNum(w.page, `summary-mean-${i}`, r.mean[i]);
      await expectNum(w.page, `summary-sigma-${i}`, Math.sqrt(r.var[i]!));
      await expectNum(w.page, `summary-std-${i}`, r.std[i]);
    }
    await expectNum(w.page, 'mean-0', r.mean[0]);
    await screenshot(w.page, 'layernorm');
  });

  it('walks the tabs: mean → centre → variance → normalise → scale and shift (keyboard)', async () => {
    const r = await ln(SEED);
    await w.page.focus('[data-testid="tab-mean"]');
    await w.page.keyboard.press('ArrowRight');
    expect(params(w.page).get('tab')).toBe('centre');
    for (const i of [0, 1]) for (const j of [0, 1, 2]) await expectNum(w.page, `centered-${i}-${j}`, r.centered[i][j]);
    await w.page.keyboard.press('ArrowRight');
    for (const i of [0, 1]) {
      await expectNum(w.page, `var-${i}`, r.var[i]);
      await expectNum(w.page, `sigma-${i}`, Math.sqrt(r.var[i]!));
      await expectNum(w.page, `std-${i}`, r.std[i]);
      await expectNum(w.page, `rstd-${i}`, r.rstd[i]);
    }
    expect(await numText(w.page, 'sigma-0')).toBe('1.4445');
    expect(await numText(w.page, 'sigma-1')).toBe('0.08165');
    await screenshot(w.page, 'layernorm-variance');
    await w.page.keyboard.press('ArrowRight');
    for (const i of [0, 1]) for (const j of [0, 1, 2]) await expectNum(w.page, `normalized-${i}-${j}`, r.normalized[i][j]);
    await w.page.click('[data-testid="tab-affine"]');
    for (const i of [0, 1]) for (const j of [0, 1, 2]) await expectNum(w.page, `out-${i}-${j}`, r.out[i][j]);
  });

  it('γ, β and ε change the engine’s answer', async () => {
    await w.page.focus('[data-testid="gamma"]');
    await press(w.page, 'ArrowRight', 5); // 1 → 1.5
    await w.page.focus('[data-testid="beta"]');
    await press(w.page, 'ArrowLeft', 3); // 0 → −0.3
    await w.page.selectOption('[data-testid="eps"]', '0.000001');
    await waitReady(w.page);
    expect(params(w.page).get('gamma')).toBe('1.5');
    expect(params(w.page).get('beta')).toBe('-0.3');
    expect(params(w.page).get('eps')).toBe('0.000001');
    const r = await ln(SEED, 1.5, -0.3, 1e-6);
    for (const i of [0, 1]) for (const j of [0, 1, 2]) await expectNum(w.page, `out-${i}-${j}`, r.out[i][j]);
    await expectNum(w.page, 'summary-std-1', r.std[1]);
    expect(await numText(w.page, 'summary-sigma-1')).toBe('0.08165');
  });

  it('RMSNorm: mean square, rms, normalise, scale', async () => {
    await choose(w.page, 'norm', 'rmsnorm');
    await waitReady(w.page);
    const r = await api<RmsNormResponse>(base, '/api/compute/rmsnorm', { x: SEED, gamma: fill(1.5), eps: 1e-6, row: 0 });
    for (const i of [0, 1]) for (const j of [0, 1, 2]) await expectNum(w.page, `out-${i}-${j}`, r.out[i][j]);
    await w.page.click('[data-testid="tab-mean"]');
    for (const i of [0, 1]) await expectNum(w.page, `mean_square-${i}`, r.mean_square[i]);
    await w.page.click('[data-testid="tab-variance"]');
    for (const i of [0, 1]) await expectNum(w.page, `rms-${i}`, r.rms[i]);
    await w.page.click('[data-testid="tab-normalise"]');
    for (const i of [0, 1]) for (const j of [0, 1, 2]) await expectNum(w.page, `normalized-${i}-${j}`, r.normalized[i][j]);
    await expect(w.page.locator('[data-testid="beta"]').count()).resolves.toBe(0);
    await screenshot(w.page, 'layernorm-rmsnorm');
    await choose(w.page, 'norm', 'layernorm');
  });

  it('BatchNorm vs LayerNorm: moving the batch changes the token’s BatchNorm output, not its LayerNorm output', async () => {
    await w.page.click('[data-testid="reset-rows"]');
    await waitReady(w.page);
    const before = await ln(SEED, 1.5, -0.3, 1e-6);
    const bn0 = await api<BatchNormResponse>(base, '/api/compute/batchnorm', { x: SEED, gamma: fill(1.5), beta: fill(-0.3), eps: 1e-6, row: 0 });
    for (const j of [0, 1, 2]) {
      await expectNum(w.page, `ln-out-${j}`, before.out[0][j]);
      await expectNum(w.page, `bn-out-${j}`, bn0.out[0][j]);
    }
    await w.page.focus('[data-testid="shift"]');
    await press(w.page, 'ArrowRight', 4); // the other token moves by +2
    await waitReady(w.page);
    expect(params(w.page).get('shift')).toBe('2');
    const batch = [SEED[0], SEED[1].map((c) => c + 2)];
    const lnB = await ln(batch, 1.5, -0.3, 1e-6);
    const bnB = await api<BatchNormResponse>(base, '/api/compute/batchnorm', { x: batch, gamma: fill(1.5), beta: fill(-0.3), eps: 1e-6, row: 0 });
    for (const j of [0, 1, 2]) {
      await expectNum(w.page, `ln-out-${j}`, lnB.out[0][j]);
      await expectNum(w.page, `bn-out-${j}`, bnB.out[0][j]);
      await expectNum(w.page, `bn-mean-${j}`, bnB.mean[j]);
      await expectNum(w.page, `bn-std-${j}`, bnB.std[j]);
    }
    // LayerNorm of the tracked token is the same; its BatchNorm output is not
    expect(lnB.out[0]).toEqual(before.out[0]);
    expect(bnB.out[0]).not.toEqual(bn0.out[0]);
  });

  it('edits the tokens: a cell, a new token, the tracked token', async () => {
    await w.page.fill('[data-testid="cell-0-0"]', '0.7');
    await w.page.press('[data-testid="cell-0-0"]', 'Tab');
    await w.page.waitForFunction(() => new URL(location.href).searchParams.get('x') === '0.7,2.3,-1.2;5,5.1,4.9');
    // the buttons from the keyboard (a click's coordinates could race a re-render under load)
    await w.page.focus('[data-testid="add-row"]');
    await w.page.keyboard.press('Enter');
    await w.page.waitForSelector('[data-testid="track-2"]', { timeout: 10_000 });
    await w.page.check('[data-testid="track-2"]');
    await waitReady(w.page);
    const x = [[0.7, 2.3, -1.2], SEED[1], [-0.5, 0.7, 1.9]];
    expect(params(w.page).get('x')).toBe('0.7,2.3,-1.2;5,5.1,4.9;-0.5,0.7,1.9');
    expect(params(w.page).get('row')).toBe('2');
    const r = await ln(x, 1.5, -0.3, 1e-6, 2);
    for (const i of [0, 1, 2]) await expectNum(w.page, `summary-mean-${i}`, r.mean[i]);
    const batch = x.map((row, i) => (i === 2 ? row : row.map((c) => c + 2)));
    const bn = await api<BatchNormResponse>(base, '/api/compute/batchnorm', { x: batch, gamma: fill(1.5), beta: fill(-0.3), eps: 1e-6, row: 2 });
    for (const j of [0, 1, 2]) await expectNum(w.page, `bn-out-${j}`, bn.out[2][j]);
    expectNoErrors(w.errors);
  });
});
