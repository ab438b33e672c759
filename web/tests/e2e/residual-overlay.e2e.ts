// The Other half's residual exercise (issue 14, seed 003): x, α·Δ and out = x + α·Δ of the tracked token in one
// plot per feature, drawn from the engine's /api/compute/residual answer; pick the feature moved most and check.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { launch, openPage, PHONE, RESULTS_DIR, screenshot, type Browser, type WatchedPage } from './browser';
import { api, expectNoErrors, expectNum, horizontalOverflow, press, waitReady } from './helpers';
import { fmt } from '../../src/lib/format';
import type { BlockResponse, ResidualResponse } from '../../src/lib/api';

const base = inject('baseUrl');
const TEXT = 'Four score and seven';
const SEL = '[data-testid="overlay"]';
let browser: Browser;
let w: WatchedPage;

async function residual(alpha: number): Promise<ResidualResponse> {
  const b = await api<BlockResponse>(base, '/api/compute/block', { model: 'chars-small', text: TEXT, track: 19, trace: false });
  const s = b.tracker.find((t) => t.block === 0 && t.name === 'residual 1')!;
  return api<ResidualResponse>(base, '/api/compute/residual', { x: [s.before], f: [s.increment], alpha });
}

/** The columns as drawn: the engine numbers they carry and their marks' geometry. */
async function columns(page: WatchedPage['page']) {
  return page.$$eval(`${SEL} g.ov-col`, (gs) =>
    gs.map((g) => {
      const a = (sel: string, name: string) => Number(g.querySelector(sel)?.getAttribute(name) ?? NaN);
      return {
        i: Number(g.getAttribute('data-feature')),
        x: Number(g.getAttribute('data-x')),
        f: Number(g.getAttribute('data-f')),
        out: Number(g.getAttribute('data-out')),
        xy: a('.ov-x', 'y'),
        xh: a('.ov-x', 'height'),
        iy: a('.ov-inc', 'y'),
        ih: a('.ov-inc', 'height'),
        cy: a('.ov-out', 'cy'),
      };
    }),
  );
}

const bestFeature = (r: ResidualResponse) => {
  let b = 0;
  r.f[0].forEach((v, i) => {
    if (Math.abs(r.alpha * v!) > Math.abs(r.alpha * r.f[0][b]!)) b = i;
  });
  return b;
};

beforeAll(async () => {
  browser = await launch();
  w = await openPage(browser, base, '?page=other-half');
});
afterAll(async () => browser?.close());

describe('Residual exercise: x, α·Δ and x + α·Δ in one plot', () => {
  it('draws every feature’s x, α·Δ and out from the engine’s answer, on one linear scale', async () => {
    await waitReady(w.page);
    await w.page.waitForSelector(`${SEL} g.ov-col`);
    const r = await residual(1);
    const cols = await columns(w.page);
    expect(cols.length).toBe(64);
    const y0 = Number(await w.page.getAttribute(`${SEL} line.zero`, 'y1'));
    // one scale: pixels per unit from the largest |x|, the same for every mark
    const big = cols.reduce((m, c) => (Math.abs(c.x) > Math.abs(m.x) ? c : m));
    const k = big.xh / Math.abs(big.x);
    for (const c of cols) {
      expect(c.x).toBe(r.x[0][c.i]);
      expect(c.f).toBe(r.f[0][c.i]);
      expect(c.out).toBe(r.out[0][c.i]);
      expect(c.xh).toBeCloseTo(k * Math.abs(c.x), 3);
      expect(c.ih).toBeCloseTo(k * Math.abs(r.alpha * c.f), 3);
      expect(y0 - c.cy).toBeCloseTo(k * c.out, 3);
      // the dot is x's top moved by α·Δ: out = x + α·Δ on the column
      expect(y0 - c.cy).toBeCloseTo((c.x >= 0 ? c.xh : -c.xh) + (c.f >= 0 ? c.ih : -c.ih), 2);
    }
    const legend = (await w.page.textContent(`${SEL} [data-testid="overlay-legend"]`))!;
    expect(legend).toContain('x (input)');
    expect(legend).toContain('α·Δ = α·Attn(LN₁(x))');
    expect(legend).toContain('out = x + α·Δ');
    await expect(w.page.locator(`${SEL} text.axis-label`).allTextContents()).resolves.toEqual(['feature index', 'value']);
    const notice = (await w.page.textContent('[data-testid="overlay-notice"]'))!;
    const b = bestFeature(r);
    expect(notice).toContain(`the biggest push is feature ${b}: x = ${fmt(r.x[0][b])}, α·Δ = ${fmt(r.alpha * r.f[0][b]!)} → out = ${fmt(r.out[0][b])}`);
    const gap = Math.max(...r.out[0].map((o, i) => Math.abs(o! - (r.x[0][i]! + r.alpha * r.f[0][i]!))));
    expect(notice).toContain(`the engine's out differs from x + α·Δ by at most ${gap.toExponential(1)}`);
    await w.page.locator('[data-testid="residual-exercise"]').scrollIntoViewIfNeeded();
    await screenshot(w.page, 'residual-overlay');
  });

  it('the keyboard picks a feature: x + α·Δ = out read out, stacked on its column', async () => {
    const r = await residual(1);
    await w.page.focus(`${SEL} svg`);
    await press(w.page, 'End', 1);
    await expectNum(w.page, 'overlay-x', r.x[0][63]);
    await expectNum(w.page, 'overlay-f', r.f[0][63]);
    await expectNum(w.page, 'overlay-out', r.out[0][63]);
    await press(w.page, 'Home', 1);
    await press(w.page, 'ArrowRight', 3);
    await expect(w.page.textContent('[data-testid="overlay-picked"]')).resolves.toBe('3');
    await expectNum(w.page, 'overlay-out', r.out[0][3]);
    const stack = w.page.locator('[data-testid="overlay-stack"]');
    const [y1, y2] = [Number(await stack.getAttribute('y1')), Number(await stack.getAttribute('y2'))];
    const col = (await columns(w.page))[3];
    expect(y2).toBeCloseTo(col.cy, 6);
    expect(y1).toBeCloseTo(col.x >= 0 ? col.xy : col.xy + col.xh, 6);
  });

  it('the exercise: a wrong pick is told which feature moved most, a click on it is right', async () => {
    const r = await residual(1);
    const b = bestFeature(r);
    const wrong = b === 0 ? 1 : 0;
    await w.page.focus(`${SEL} svg`);
    await press(w.page, 'Home', 1);
    if (wrong === 1) await press(w.page, 'ArrowRight', 1);
    await w.page.click('[data-testid="overlay-check"]');
    const no = (await w.page.textContent('[data-testid="overlay-verdict"]'))!;
    expect(no).toContain(`Not quite: feature ${wrong} moved by ${fmt(Math.abs(r.f[0][wrong]!))}; feature ${b} moved most, by ${fmt(Math.abs(r.f[0][b]!))}`);
    // a click on the best feature's column (its centre)
    const box = (await w.page.locator(`${SEL} svg`).boundingBox())!;
    const W = box.width;
    const band = (W - 46 - 8) / 64;
    await w.page.mouse.click(box.x + 46 + (b + 0.5) * band, box.y + 100);
    await expect(w.page.textContent('[data-testid="overlay-picked"]')).resolves.toBe(String(b));
    await expect(w.page.locator('[data-testid="overlay-verdict"]').count()).resolves.toBe(0);
    await w.page.click('[data-testid="overlay-check"]');
    expect(await w.page.textContent('[data-testid="overlay-verdict"]')).toContain(`Yes: feature ${b} has the largest |α·Δ|`);
  });

  it('α moves the plot: the engine’s answer for the new α', async () => {
    await w.page.focus('[data-testid="alpha"]');
    await press(w.page, 'ArrowRight', 10);
    await waitReady(w.page);
    const r = await residual(1.5);
    await w.page.waitForFunction(
      ([sel, v]) => document.querySelector(`${sel} g.ov-col[data-feature="5"]`)?.getAttribute('data-out') === v,
      [SEL, String(r.out[0][5])] as const,
    );
    const cols = await columns(w.page);
    for (const c of cols) expect(c.out).toBe(r.out[0][c.i]);
    const big = cols.reduce((m, c) => (Math.abs(c.x) > Math.abs(m.x) ? c : m));
    const k = big.xh / Math.abs(big.x);
    for (const c of cols) expect(c.ih).toBeCloseTo(k * Math.abs(1.5 * c.f), 3);
    expectNoErrors(w.errors);
  });

  it('on a 390 px phone: fits, no text under 11 px', async () => {
    const phone = await launch(PHONE);
    try {
      const p = await openPage(phone, base, '?page=other-half');
      await waitReady(p.page);
      await p.page.waitForSelector(`${SEL} g.ov-col`);
      await expect(horizontalOverflow(p.page)).resolves.toBeLessThanOrEqual(0);
      const fig = (await p.page.locator(SEL).boundingBox())!;
      expect(fig.x).toBeGreaterThanOrEqual(0);
      expect(fig.x + fig.width).toBeLessThanOrEqual(PHONE.width);
      const small = await p.page.$$eval('[data-testid="residual-exercise"] *', (els) =>
        els
          .filter((e) => [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent!.replace(/[\s\u200b]/g, '') !== ''))
          .map((e) => ({ t: e.textContent!.trim().slice(0, 30), px: parseFloat(getComputedStyle(e).fontSize) }))
          .filter((s) => s.px < 11),
      );
      expect(small).toEqual([]);
      await p.page.locator('[data-testid="residual-exercise"]').screenshot({ path: path.join(RESULTS_DIR, 'residual-overlay-phone.png') });
      expectNoErrors(p.errors);
    } finally {
      await phone.close();
    }
  });
});
