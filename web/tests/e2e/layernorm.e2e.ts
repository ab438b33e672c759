// Seeds 004 and 003: LayerNorm step by step with the seed's tokens (the first two of the four by default) and
// exact numbers, the step-by-step picture, γ / β / ε, RMSNorm, BatchNorm vs LayerNorm live, and the editable
// cells (an emptied cell, a number beyond float32).
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { launch, openPage, screenshot, type Browser, type WatchedPage } from './browser';
import { api, apiStatus, choose, expectNoErrors, expectNum, numText, params, press, waitReady } from './helpers';
import type { BatchNormResponse, LayerNormResponse, RmsNormResponse } from '../../src/lib/api';
import { DEFAULT_TOKENS } from '../../src/lib/pages';

const base = inject('baseUrl');
const SEED = [
  [0.1, 2.3, -1.2],
  [5.0, 5.1, 4.9],
];
/** The page's default batch: the seed's two tokens, then two of the page's own. */
const X = DEFAULT_TOKENS;
const ROWS = [0, 1, 2, 3];
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
    // four tokens by default, the seed's two first
    expect(X.slice(0, 2)).toEqual(SEED);
    expect(X).toHaveLength(4);
    await expect(w.page.locator('[data-testid="matrix"] tbody tr').count()).resolves.toBe(4);
    for (const i of ROWS) for (const j of [0, 1, 2]) expect(Number(await w.page.inputValue(`[data-testid="cell-${i}-${j}"]`))).toBe(X[i][j]);
    expect(params(w.page).get('x')).toBeNull(); // the default: not in the URL
    // the literal values the seed pages are corrected to
    await expect.poll(() => numText(w.page, 'summary-sigma-0')).toBe('1.4445');
    expect(await numText(w.page, 'summary-sigma-1')).toBe('0.08165');
    expect(await numText(w.page, 'summary-mean-0')).toBe('0.4');
    expect(await numText(w.page, 'summary-mean-1')).toBe('5.0');
    // and they are the engine's: σ = √var of the API's biased variance, √(var + ε) its std
    const r = await ln(X);
    for (const i of ROWS) {
      await expectNum(w.page, `summary-mean-${i}`, r.mean[i]);
      await expectNum(w.page, `summary-sigma-${i}`, Math.sqrt(r.var[i]!));
      await expectNum(w.page, `summary-std-${i}`, r.std[i]);
    }
    await expectNum(w.page, 'mean-0', r.mean[0]);
    await screenshot(w.page, 'layernorm');
  });

  it('draws the tracked token step by step: x, x − μ, x̂, γ·x̂ + β as dots on one number line each, one scale', async () => {
    const r = await ln(X);
    const lines = { x: X[0], centered: r.centered[0], normalized: r.normalized[0], out: r.out[0] } as const;
    const dots: { value: number; cx: number }[] = [];
    for (const [id, values] of Object.entries(lines))
      for (const [j, value] of values.entries()) {
        const dot = w.page.locator(`[data-testid="steps-picture-${id}-${j}"]`);
        await expect(dot.getAttribute('data-raw')).resolves.toBe(String(value));
        dots.push({ value: value!, cx: Number(await dot.getAttribute('cx')) });
      }
    // one scale for the four lines: every dot at the same px per unit from the same zero
    const [a, b] = [dots[0], dots.find((d) => Math.abs(d.value - dots[0].value) > 1)!];
    const k = (b.cx - a.cx) / (b.value - a.value);
    for (const d of dots) expect(d.cx - a.cx).toBeCloseTo((d.value - a.value) * k, 1);
    // the marks: μ on x, ±√(σ² + ε) on the centred line
    await expectNum(w.page, 'steps-picture-mark-x-0', r.mean[0]);
    await expectNum(w.page, 'steps-picture-mark-centered-1', -r.std[0]!);
    await expectNum(w.page, 'steps-picture-mark-centered-2', r.std[0]);
    // the tab's step is the one outlined; the keyboard reads a dot with its formula
    await expect(w.page.locator('[data-testid="steps-picture"] g.nl-line.active').getAttribute('data-line')).resolves.toBe('x');
    await w.page.focus('[data-testid="steps-picture"] svg');
    await press(w.page, 'ArrowDown', 2);
    await press(w.page, 'ArrowRight', 1);
    await expectNum(w.page, 'steps-picture-readout', r.normalized[0][1]);
    await screenshot(w.page, 'layernorm-steps-picture');
    // another tracked token: the picture follows it
    await w.page.check('[data-testid="track-1"]');
    await waitReady(w.page);
    const r1 = await ln(X, 1, 0, 1e-5, 1);
    for (const j of [0, 1, 2]) await expect(w.page.getAttribute(`[data-testid="steps-picture-normalized-${j}"]`, 'data-raw')).resolves.toBe(String(r1.normalized[1][j]));
    await w.page.check('[data-testid="track-0"]');
    await waitReady(w.page);
  });

  it('walks the tabs: mean → centre → variance → normalise → scale and shift (keyboard)', async () => {
    const r = await ln(X);
    await w.page.focus('[data-testid="tab-mean"]');
    await w.page.keyboard.press('ArrowRight');
    expect(params(w.page).get('tab')).toBe('centre');
    await expect(w.page.locator('[data-testid="steps-picture"] g.nl-line.active').getAttribute('data-line')).resolves.toBe('centered');
    for (const i of ROWS) for (const j of [0, 1, 2]) await expectNum(w.page, `centered-${i}-${j}`, r.centered[i][j]);
    await w.page.keyboard.press('ArrowRight');
    for (const i of ROWS) {
      await expectNum(w.page, `var-${i}`, r.var[i]);
      await expectNum(w.page, `sigma-${i}`, Math.sqrt(r.var[i]!));
      await expectNum(w.page, `std-${i}`, r.std[i]);
      await expectNum(w.page, `rstd-${i}`, r.rstd[i]);
    }
    expect(await numText(w.page, 'sigma-0')).toBe('1.4445');
    expect(await numText(w.page, 'sigma-1')).toBe('0.08165');
    await screenshot(w.page, 'layernorm-variance');
    await w.page.keyboard.press('ArrowRight');
    for (const i of ROWS) for (const j of [0, 1, 2]) await expectNum(w.page, `normalized-${i}-${j}`, r.normalized[i][j]);
    await w.page.click('[data-testid="tab-affine"]');
    await expect(w.page.locator('[data-testid="steps-picture"] g.nl-line.active').getAttribute('data-line')).resolves.toBe('out');
    for (const i of ROWS) for (const j of [0, 1, 2]) await expectNum(w.page, `out-${i}-${j}`, r.out[i][j]);
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
    const r = await ln(X, 1.5, -0.3, 1e-6);
    for (const i of ROWS) for (const j of [0, 1, 2]) await expectNum(w.page, `out-${i}-${j}`, r.out[i][j]);
    for (const j of [0, 1, 2]) await expect(w.page.getAttribute(`[data-testid="steps-picture-out-${j}"]`, 'data-raw')).resolves.toBe(String(r.out[0][j]));
    await expectNum(w.page, 'steps-picture-mark-out-3', -0.3); // β on the last line
    await expectNum(w.page, 'summary-std-1', r.std[1]);
    expect(await numText(w.page, 'summary-sigma-1')).toBe('0.08165');
  });

  it('RMSNorm: mean square, rms, normalise, scale', async () => {
    await choose(w.page, 'norm', 'rmsnorm');
    await waitReady(w.page);
    const r = await api<RmsNormResponse>(base, '/api/compute/rmsnorm', { x: X, gamma: fill(1.5), eps: 1e-6, row: 0 });
    for (const i of ROWS) for (const j of [0, 1, 2]) await expectNum(w.page, `out-${i}-${j}`, r.out[i][j]);
    await w.page.click('[data-testid="tab-mean"]');
    for (const i of ROWS) await expectNum(w.page, `mean_square-${i}`, r.mean_square[i]);
    await w.page.click('[data-testid="tab-variance"]');
    for (const i of ROWS) await expectNum(w.page, `rms-${i}`, r.rms[i]);
    await w.page.click('[data-testid="tab-normalise"]');
    for (const i of ROWS) for (const j of [0, 1, 2]) await expectNum(w.page, `normalized-${i}-${j}`, r.normalized[i][j]);
    // the picture: x, x / rms, γ·x̂ (no centring)
    for (const j of [0, 1, 2]) await expect(w.page.getAttribute(`[data-testid="steps-picture-normalized-${j}"]`, 'data-raw')).resolves.toBe(String(r.normalized[0][j]));
    await expect(w.page.locator('[data-testid="steps-picture"] [data-testid^="steps-picture-centered"]').count()).resolves.toBe(0);
    await expect(w.page.locator('[data-testid="beta"]').count()).resolves.toBe(0);
    await screenshot(w.page, 'layernorm-rmsnorm');
    await choose(w.page, 'norm', 'layernorm');
  });

  it('BatchNorm vs LayerNorm on the four tokens: moving the batch changes the token’s BatchNorm output, not its LayerNorm output', async () => {
    await waitReady(w.page);
    const bnOf = (x: number[][]) => api<BatchNormResponse>(base, '/api/compute/batchnorm', { x, gamma: fill(1.5), beta: fill(-0.3), eps: 1e-6, row: 0 });
    const before = await ln(X, 1.5, -0.3, 1e-6);
    const bn0 = await bnOf(X);
    for (const j of [0, 1, 2]) {
      await expectNum(w.page, `ln-out-${j}`, before.out[0][j]);
      await expectNum(w.page, `bn-out-${j}`, bn0.out[0][j]);
      await expectNum(w.page, `bn-mean-${j}`, bn0.mean[j]);
    }
    // with the seed's two tokens alone BatchNorm maps every feature to about ±γ + β whatever the other token is;
    // with four, the tracked token's BatchNorm output is not that
    const pair = await bnOf(SEED);
    const pairMoved = await bnOf([SEED[0], SEED[1].map((c) => c + 2)]);
    for (const j of [0, 1, 2]) expect(Math.abs(pair.out[0][j]! - pairMoved.out[0][j]!)).toBeLessThan(1e-3);
    expect(bn0.out[0].some((o, j) => Math.abs(o! - pair.out[0][j]!) > 0.1)).toBe(true);
    await w.page.focus('[data-testid="shift"]');
    await press(w.page, 'ArrowRight', 4); // the other tokens move by +2
    await waitReady(w.page);
    expect(params(w.page).get('shift')).toBe('2');
    const batch = X.map((r, i) => (i === 0 ? r : r.map((c) => c + 2)));
    const lnB = await ln(batch, 1.5, -0.3, 1e-6);
    const bnB = await bnOf(batch);
    for (const j of [0, 1, 2]) {
      await expectNum(w.page, `ln-out-${j}`, lnB.out[0][j]);
      await expectNum(w.page, `bn-out-${j}`, bnB.out[0][j]);
      await expectNum(w.page, `bn-mean-${j}`, bnB.mean[j]);
      await expectNum(w.page, `bn-std-${j}`, bnB.std[j]);
    }
    // LayerNorm of the tracked token is the same; its BatchNorm output moved, visibly
    expect(lnB.out[0]).toEqual(before.out[0]);
    expect(bnB.out[0].some((o, j) => Math.abs(o! - bn0.out[0][j]!) > 0.1)).toBe(true);
    await screenshot(w.page, 'layernorm-batchnorm');
  });

  it('edits the tokens: a cell, a new token, the tracked token', async () => {
    await w.page.fill('[data-testid="cell-0-0"]', '0.7');
    await w.page.press('[data-testid="cell-0-0"]', 'Tab');
    await w.page.waitForFunction(() => new URL(location.href).searchParams.get('x') === '0.7,2.3,-1.2;5,5.1,4.9;-0.5,0.7,1.9;3,-2,0.5');
    // the buttons from the keyboard (a click's coordinates could race a re-render under load)
    await w.page.focus('[data-testid="add-row"]');
    await w.page.keyboard.press('Enter');
    await w.page.waitForSelector('[data-testid="track-4"]', { timeout: 10_000 });
    await w.page.check('[data-testid="track-4"]');
    await waitReady(w.page);
    const x = [[0.7, 2.3, -1.2], ...X.slice(1), [1.0, 1.0, 1.2]];
    expect(params(w.page).get('x')).toBe('0.7,2.3,-1.2;5,5.1,4.9;-0.5,0.7,1.9;3,-2,0.5;1,1,1.2');
    expect(params(w.page).get('row')).toBe('4');
    const r = await ln(x, 1.5, -0.3, 1e-6, 4);
    for (const i of [0, 1, 2, 3, 4]) await expectNum(w.page, `summary-mean-${i}`, r.mean[i]);
    const batch = x.map((row, i) => (i === 4 ? row : row.map((c) => c + 2)));
    const bn = await api<BatchNormResponse>(base, '/api/compute/batchnorm', { x: batch, gamma: fill(1.5), beta: fill(-0.3), eps: 1e-6, row: 4 });
    for (const j of [0, 1, 2]) await expectNum(w.page, `bn-out-${j}`, bn.out[4][j]);
    expectNoErrors(w.errors);
  });

  it('an emptied cell is marked and not computed, sent, or written to the URL as its old value', async () => {
    const u = await openPage(browser, base, '?page=layernorm');
    await waitReady(u.page);
    const sent: string[] = [];
    u.page.on('request', (req) => {
      if (req.url().includes('/api/compute/')) sent.push(req.url());
    });
    await u.page.fill('[data-testid="cell-1-0"]', '');
    await u.page.press('[data-testid="cell-1-0"]', 'Tab');
    await u.page.waitForSelector('[data-testid="cells-invalid"]');
    await expect(u.page.locator('[data-testid="cells-invalid"]').innerText()).resolves.toContain('token 2, x[0] is empty');
    await expect(u.page.getAttribute('[data-testid="cell-1-0"]', 'aria-invalid')).resolves.toBe('true');
    // the URL holds the blank, not 5
    expect(params(u.page).get('x')).toBe('0.1,2.3,-1.2;,5.1,4.9;-0.5,0.7,1.9;3,-2,0.5');
    // nothing computed from the old value, nothing sent
    await u.page.waitForTimeout(400);
    expect(sent).toEqual([]);
    await expect(u.page.locator('[data-testid="widget"] .num').count()).resolves.toBe(0);
    await expect(u.page.locator('[data-testid="steps-picture"]').count()).resolves.toBe(0);
    await expect(u.page.locator('[data-testid="error"]').count()).resolves.toBe(0);
    await screenshot(u.page, 'layernorm-empty-cell');
    // a shared URL with the blank opens the same way
    await u.page.reload();
    await u.page.waitForSelector('[data-testid="cells-invalid"]');
    expect(await u.page.inputValue('[data-testid="cell-1-0"]')).toBe('');
    await expect(u.page.getAttribute('[data-testid="cell-1-0"]', 'aria-invalid')).resolves.toBe('true');
    // a number beyond what the input can hold is not taken either (the browser hands the page no value for it)
    await u.page.fill('[data-testid="cell-1-0"]', '1e309');
    await u.page.press('[data-testid="cell-1-0"]', 'Tab');
    await expect(u.page.locator('[data-testid="cells-invalid"]').innerText()).resolves.toContain('token 2, x[0] is not a finite number');
    expect(params(u.page).get('x')).toBe('0.1,2.3,-1.2;,5.1,4.9;-0.5,0.7,1.9;3,-2,0.5');
    // filled: computed again, with the new value
    await u.page.fill('[data-testid="cell-1-0"]', '4');
    await u.page.press('[data-testid="cell-1-0"]', 'Tab');
    await waitReady(u.page);
    await expect(u.page.locator('[data-testid="cells-invalid"]').count()).resolves.toBe(0);
    const x = [X[0], [4, 5.1, 4.9], X[2], X[3]];
    const r = await ln(x);
    for (const i of ROWS) await expectNum(u.page, `summary-mean-${i}`, r.mean[i]);
    expect(params(u.page).get('x')).toBe('0.1,2.3,-1.2;4,5.1,4.9;-0.5,0.7,1.9;3,-2,0.5');
    expectNoErrors(u.errors);
    await u.page.close();
  });

  it('a cell emptied with the keyboard is blank at once, while it still has the focus: not computed, not in the URL', async () => {
    const u = await openPage(browser, base, '?page=layernorm');
    await waitReady(u.page);
    await expectNum(u.page, 'summary-mean-1', (await ln(X)).mean[1]);
    const sent: string[] = [];
    u.page.on('request', (req) => {
      if (req.url().includes('/api/compute/')) sent.push(req.postData() ?? '');
    });
    // select the 5 and delete it; the cell keeps the focus (no Tab, no Enter: no change event)
    await u.page.click('[data-testid="cell-1-0"]');
    await u.page.keyboard.press('Control+a');
    await u.page.keyboard.press('Backspace');
    await u.page.waitForSelector('[data-testid="cells-invalid"]', { timeout: 5000 });
    await expect(u.page.locator('[data-testid="cells-invalid"]').innerText()).resolves.toContain('token 2, x[0] is empty');
    await expect(u.page.getAttribute('[data-testid="cell-1-0"]', 'aria-invalid')).resolves.toBe('true');
    expect(params(u.page).get('x')).toBe('0.1,2.3,-1.2;,5.1,4.9;-0.5,0.7,1.9;3,-2,0.5');
    await expect(u.page.locator('[data-testid="widget"] .num').count()).resolves.toBe(0);
    await u.page.waitForTimeout(400);
    expect(sent, 'requests sent with the old value').toEqual([]);
    expect(await u.page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).toBe('cell-1-0');
    // typed, still in the cell: computed with what is typed, the text kept as typed ("1e1", not "10")
    await u.page.keyboard.type('1e1');
    await waitReady(u.page);
    const x = [X[0], [10, 5.1, 4.9], X[2], X[3]];
    await expectNum(u.page, 'summary-mean-1', (await ln(x)).mean[1]);
    expect(params(u.page).get('x')).toBe('0.1,2.3,-1.2;10,5.1,4.9;-0.5,0.7,1.9;3,-2,0.5');
    expect(await u.page.inputValue('[data-testid="cell-1-0"]')).toBe('1e1');
    // text the input cannot read ("-" alone) is blank at once too
    await u.page.keyboard.press('Control+a');
    await u.page.keyboard.type('-');
    await expect(u.page.locator('[data-testid="cells-invalid"]').innerText()).resolves.toContain('token 2, x[0] is not a finite number');
    expect(params(u.page).get('x')).toBe('0.1,2.3,-1.2;,5.1,4.9;-0.5,0.7,1.9;3,-2,0.5');
    await u.page.keyboard.type('4');
    await u.page.keyboard.press('Tab');
    await waitReady(u.page);
    const r = await ln([X[0], [-4, 5.1, 4.9], X[2], X[3]]);
    for (const i of ROWS) await expectNum(u.page, `summary-mean-${i}`, r.mean[i]);
    expect(await u.page.inputValue('[data-testid="cell-1-0"]')).toBe('-4');
    expectNoErrors(u.errors);
    await u.page.close();
  });

  it('1e308 in a cell: the engine’s refusal said clearly, the cell marked, no μ or σ beside it; the error goes with its cause', async () => {
    const u = await openPage(browser, base, '?page=layernorm');
    await waitReady(u.page);
    await u.page.fill('[data-testid="cell-1-0"]', '1e308');
    await u.page.press('[data-testid="cell-1-0"]', 'Tab');
    await u.page.waitForSelector('[data-testid="error"]');
    await u.page.waitForSelector('[data-testid="widget"][data-status="error"]');
    // what the engine answers for it: a 400 naming the element (beyond float32), never a null μ or σ
    const x = [X[0], [1e308, 5.1, 4.9], X[2], X[3]];
    const refused = await apiStatus(base, '/api/compute/layernorm', { x, gamma: fill(1), beta: fill(0), eps: 1e-5, row: 0 });
    expect(refused.status).toBe(400);
    expect(refused.json.error.field).toBe('x[1][0]');
    const msg = await u.page.locator('[data-testid="error"]').innerText();
    expect(msg).toContain(refused.json.error.message);
    await expect(u.page.getAttribute('[data-testid="cell-1-0"]', 'aria-invalid')).resolves.toBe('true');
    // no numbers of the last good answer beside the refusal (no μ, no σ, no "—")
    await expect(u.page.locator('[data-testid="widget"] .num').count()).resolves.toBe(0);
    await expect(u.page.locator('[data-testid="summary"]').count()).resolves.toBe(0);
    await screenshot(u.page, 'layernorm-1e308');
    // the cause removed (the token taken out): the error goes, the numbers come back
    await u.page.click('[aria-label="remove token 2"]');
    await waitReady(u.page);
    await expect(u.page.locator('[data-testid="error"]').count()).resolves.toBe(0);
    await expect(u.page.getAttribute('[data-testid="cell-1-0"]', 'aria-invalid')).resolves.toBeNull();
    const r = await ln([X[0], X[2], X[3]]);
    for (const i of [0, 1, 2]) await expectNum(u.page, `summary-mean-${i}`, r.mean[i]);
    // down to one token: BatchNorm waits for a second, and no error is left from the batch requests
    for (const n of [3, 2]) await u.page.click(`[aria-label="remove token ${n}"]`);
    await u.page.waitForSelector('[data-testid="bn-needs-batch"]');
    await expect(u.page.locator('[data-testid="error"]').count()).resolves.toBe(0);
    expectNoErrors(u.errors, [/status of 400/]);
    await u.page.close();
  });
});
