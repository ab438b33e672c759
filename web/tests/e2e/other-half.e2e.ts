// Seed 000's page: component × token tracker, the residual slider, LayerNorm matrices, the FFN hidden layer.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { launch, openPage, screenshot, type Browser, type WatchedPage } from './browser';
import { api, apiStatus, choose, expectNoErrors, expectNum, expectText, params, press, tableTexts, waitReady } from './helpers';
import { interpolateRdBu, scaleDiverging } from 'd3';
import { fmt } from '../../src/lib/format';
import { strongestPushes } from '../../src/lib/ffn';
import type { BlockResponse, FfnResponse, ResidualResponse, TrackerStep } from '../../src/lib/api';

const base = inject('baseUrl');
const TEXT = 'Four score and seven';
let browser: Browser;
let w: WatchedPage;
/** Every /api/compute/block request the page sent, with the size of its answer. */
const blockRequests: { body: any; bytes: number }[] = [];

async function tracker(track: number): Promise<TrackerStep[]> {
  const b = await api<BlockResponse>(base, '/api/compute/block', { model: 'chars-small', text: TEXT, track, trace: false });
  expect(b.track).toBe(track);
  return b.tracker;
}
const step = (t: TrackerStep[], block: number, name: string) => t.find((s) => s.block === block && s.name === name)!;

beforeAll(async () => {
  browser = await launch();
  w = await openPage(browser, base, '?page=other-half');
  w.page.on('response', async (res) => {
    const req = res.request();
    if (!req.url().endsWith('/api/compute/block') || res.status() !== 200) return;
    const body = await res.body().catch(() => null);
    if (body) blockRequests.push({ body: req.postDataJSON(), bytes: body.length });
  });
});
afterAll(async () => browser?.close());

describe('The other half (seed 000)', () => {
  it('loads with the residual of the last token and the engine’s numbers', async () => {
    await waitReady(w.page);
    await expectText(w.page, '[data-testid="tracked"]', '19');
    await expect(w.page.locator('[data-testid="model-badge"]').textContent()).resolves.toContain('chars-small');
    const s = step(await tracker(19), 0, 'residual 1');
    const r = await api<ResidualResponse>(base, '/api/compute/residual', { x: [s.before], f: [s.increment], alpha: 1 });
    await expectNum(w.page, 'norm-x', r.norms[0].x);
    await expectNum(w.page, 'norm-f', r.norms[0].f);
    await expectNum(w.page, 'norm-out', r.norms[0].out);
    await expectNum(w.page, 'cos', r.norms[0].cos_x_out);
    // α = 1 is the model itself: the residual's output is the tracker's `after`.
    expect(r.out[0]).toEqual(s.after);
    await screenshot(w.page, 'other-half-residual');
  });

  it('the α slider (keyboard) recomputes out = x + αΔ, debounced', async () => {
    let sent = 0;
    const count = (req: { url(): string }) => {
      if (req.url().endsWith('/api/compute/residual')) sent++;
    };
    w.page.on('request', count);
    await w.page.focus('[data-testid="alpha"]');
    await press(w.page, 'ArrowRight', 10); // 1 → 1.5 in steps of 0.05
    await waitReady(w.page);
    w.page.off('request', count);
    expect(params(w.page).get('alpha')).toBe('1.5');
    expect(sent).toBeGreaterThanOrEqual(1);
    expect(sent).toBeLessThan(10);
    const s = step(await tracker(19), 0, 'residual 1');
    const r = await api<ResidualResponse>(base, '/api/compute/residual', { x: [s.before], f: [s.increment], alpha: 1.5 });
    await expectNum(w.page, 'alpha-used', 1.5);
    await expectNum(w.page, 'norm-out', r.norms[0].out);
    await expectNum(w.page, 'cos', r.norms[0].cos_x_out);
  });

  it('x, α·Δ and out overlaid per feature: x + α·Δ reads on one row, the engine’s numbers', async () => {
    await waitReady(w.page);
    const s = step(await tracker(19), 0, 'residual 1');
    const r = await api<ResidualResponse>(base, '/api/compute/residual', { x: [s.before], f: [s.increment], alpha: 1.5 });
    const rows = await w.page.$$eval('[data-testid="residual-bars"] g.res-row', (gs) =>
      gs.map((g) => {
        const num = (sel: string, a: string) => Number(g.querySelector(sel)?.getAttribute(a) ?? NaN);
        const xr = { x: num('.res-x', 'x'), w: num('.res-x', 'width') };
        const inc = g.querySelector('.res-inc');
        return {
          feature: Number(g.getAttribute('data-feature')),
          x: g.getAttribute('data-x'),
          f: g.getAttribute('data-f'),
          out: g.getAttribute('data-out'),
          xBar: xr,
          inc: inc ? { x: Number(inc.getAttribute('x')), w: Number(inc.getAttribute('width')) } : null,
          dot: num('.res-out', 'cx'),
        };
      }),
    );
    const zero = Number(await w.page.getAttribute('[data-testid="residual-bars"] line.zero', 'x1'));
    expect(rows).toHaveLength(64);
    let k: number | null = null; // px per unit, the same for x, the increment and out
    for (const row of rows) {
      const i = row.feature;
      expect([row.x, row.f, row.out]).toEqual([String(r.x[0][i]), String(r.f[0][i]), String(r.out[0][i])]);
      const xv = r.x[0][i]!;
      const ov = r.out[0][i]!;
      // the grey bar runs from 0 to x, the dot sits at out, the coloured segment joins them
      const xEnd = xv >= 0 ? row.xBar.x + row.xBar.w : row.xBar.x;
      if (Math.abs(xv) > 1e-3) {
        k ??= (xEnd - zero) / xv;
        expect((xEnd - zero) / xv).toBeCloseTo(k, 3);
      }
      if (k !== null) expect(row.dot - zero).toBeCloseTo(ov * k, 1);
      if (row.inc) {
        expect(Math.min(row.inc.x, row.inc.x + row.inc.w)).toBeCloseTo(Math.min(xEnd, row.dot), 1);
        expect(Math.max(row.inc.x, row.inc.x + row.inc.w)).toBeCloseTo(Math.max(xEnd, row.dot), 1);
      }
    }
    // one feature from the keyboard: its x, Δ and out
    await w.page.focus('[data-testid="residual-bars"] svg');
    await press(w.page, 'ArrowDown', 3);
    await expectNum(w.page, 'residual-bars-x', r.x[0][3]);
    await expectNum(w.page, 'residual-bars-f', r.f[0][3]);
    await expectNum(w.page, 'residual-bars-out', r.out[0][3]);
    await screenshot(w.page, 'other-half-residual-overlay');
  });

  it('picks a token, a block and the residual around the FFN', async () => {
    await w.page.click('[data-testid="token-3"]');
    await choose(w.page, 'block', '1');
    await choose(w.page, 'sub', 'ffn');
    await waitReady(w.page);
    await expectText(w.page, '[data-testid="tracked"]', '3');
    const s = step(await tracker(3), 1, 'residual 2');
    const r = await api<ResidualResponse>(base, '/api/compute/residual', { x: [s.before], f: [s.increment], alpha: 1.5 });
    await expectNum(w.page, 'norm-x', r.norms[0].x);
    await expectNum(w.page, 'norm-out', r.norms[0].out);
    // the arrow keys move the tracked token
    await w.page.focus('[data-testid="token-3"]');
    await w.page.keyboard.press('ArrowRight');
    await expectText(w.page, '[data-testid="tracked"]', '4');
    expect(params(w.page).get('pos')).toBe('4');
  });

  it('LayerNorm: the tracked row’s mean and rstd, the matrices before and after (only those two traced)', async () => {
    const from = blockRequests.length;
    await choose(w.page, 'component', 'layernorm');
    await waitReady(w.page);
    const ln = step(await tracker(4), 1, 'ln2');
    await expectNum(w.page, 'ln-mean', ln.mean!);
    await expectNum(w.page, 'ln-rstd', ln.rstd!);
    await expectNum(w.page, 'ln-std', 1 / ln.rstd!);
    await expect(w.page.locator('[data-testid="heat-before"] rect').count()).resolves.toBeGreaterThan(20 * 64);
    // the request names the two activations the heatmaps draw, and the answer carries those and no other
    const names = ['blocks.1.hook_resid_mid', 'blocks.1.ln2.hook_out'];
    await expect.poll(() => blockRequests.slice(from).some((r) => Array.isArray(r.body.trace)), { timeout: 5000 }).toBe(true);
    const asked = blockRequests.slice(from).find((r) => Array.isArray(r.body.trace));
    expect(asked?.body.trace).toEqual(names);
    const traced = await api<BlockResponse>(base, '/api/compute/block', asked!.body);
    expect(Object.keys(traced.trace!).sort()).toEqual(names);
    const full = await api<BlockResponse>(base, '/api/compute/block', { ...asked!.body, trace: true });
    expect(Object.keys(full.trace!).length).toBeGreaterThan(40);
    expect(asked!.bytes).toBeLessThan(JSON.stringify(full).length / 4);
    // the heatmaps' cells are the trace's numbers: read features 0 and 1 of the tracked row with the keyboard
    const before = traced.trace![names[0]] as number[][];
    const after = traced.trace![names[1]] as number[][];
    await expect(w.page.locator('[data-testid="heat-before"] figcaption').innerText()).resolves.toContain(names[0]);
    await expect(w.page.locator('[data-testid="heat-after"] figcaption').innerText()).resolves.toContain(names[1]);
    // one colour scale for both, with its legend: ± the largest |value| of the two matrices
    const half = Math.max(...[...before, ...after].flat().map((v) => Math.abs(v)));
    await expect(w.page.getAttribute('[data-testid="heat-before"]', 'data-half')).resolves.toBe(String(half));
    await expect(w.page.getAttribute('[data-testid="heat-after"]', 'data-half')).resolves.toBe(String(half));
    await expectNum(w.page, 'heat-legend-max', half);
    await expectNum(w.page, 'heat-legend-min', -half);
    const colour = scaleDiverging(interpolateRdBu).domain([half, 0, -half]);
    for (const [id, m] of [['heat-before', before], ['heat-after', after]] as const)
      for (const [t, i] of [[4, 1], [0, 0], [7, 30]])
        await expect(w.page.getAttribute(`[data-testid="${id}"] rect.cell[data-row="${t}"][data-col="${i}"]`, 'fill')).resolves.toBe(colour(m[t][i]));
    await w.page.focus('[data-testid="heat-before"] svg');
    await press(w.page, 'ArrowRight', 2);
    await expectText(w.page, '[data-testid="heat-before"] .readout b', fmt(before[4][1]));
    await w.page.focus('[data-testid="heat-after"] svg');
    await press(w.page, 'ArrowRight', 1);
    await expectText(w.page, '[data-testid="heat-after"] .readout b', fmt(after[4][0]));
    expect(after[4]).toEqual(ln.after);

    await choose(w.page, 'sub', 'attn');
    await choose(w.page, 'block', '0');
    await waitReady(w.page);
    const ln1 = step(await tracker(4), 0, 'ln1');
    await expectNum(w.page, 'ln-mean', ln1.mean!);
    await expectNum(w.page, 'ln-rstd', ln1.rstd!);
    await expect(w.page.locator('[data-testid="heat-after"] figcaption').innerText()).resolves.toContain('blocks.0.ln1.hook_out');
    // the heatmap picks the tracked row with the keyboard
    await w.page.focus('[data-testid="heat-before"] svg');
    await w.page.keyboard.press('ArrowDown');
    await expectText(w.page, '[data-testid="tracked"]', '5');
    await waitReady(w.page);
    await screenshot(w.page, 'other-half-layernorm');
  });

  it('FFN: the token’s hidden layer and its most active units', async () => {
    await choose(w.page, 'component', 'ffn');
    await waitReady(w.page);
    const f = step(await tracker(5), 0, 'ffn');
    const r = await api<FfnResponse>(base, '/api/compute/ffn', { model: 'chars-small', layer: 0, x: [f.before], top_k: 8 });
    await expectNum(w.page, 'active-fraction', r.top_units[0].active_fraction);
    expect(await tableTexts(w.page, '[data-testid="top-units"]')).toEqual(
      r.top_units[0].units.map((u) => [String(u.unit), fmt(u.pre), fmt(u.act)]),
    );
    // what this layer refines: the output features its increment pushes most, from the output drawn beside it
    // (the tracker's FFN output for this token)
    const pushes = strongestPushes(f.after, 3);
    expect(pushes).toHaveLength(3);
    for (const [k, p] of pushes.entries()) {
      await expect(w.page.getAttribute(`[data-testid="refines-feature-${k}"]`, 'data-feature')).resolves.toBe(String(p.feature));
      await expectNum(w.page, `refines-value-${k}`, p.value);
    }
    const line = await w.page.locator('[data-testid="refines"]').innerText();
    expect(line).toContain(`feature ${pushes[0].feature} ${pushes[0].value > 0 ? 'up' : 'down'} most`);
    // the hidden layer drawn is the tracker's hidden.post: read unit 2 with the keyboard
    await w.page.focus('[data-testid="ffn-hidden"] svg');
    await press(w.page, 'ArrowDown', 2);
    await expectNum(w.page, 'ffn-hidden-readout', f.hidden!.post[2]);
    await screenshot(w.page, 'other-half-ffn');
  });

  it('the take-aways link to their widgets', async () => {
    await w.page.click('[data-testid="takeaway-residual"]');
    expect(params(w.page).get('comp')).toBeNull(); // residual is the default
    await waitReady(w.page);
    await expect(w.page.locator('[data-testid="norm-x"]').count()).resolves.toBe(1);
    await w.page.click('[data-testid="takeaway-layernorm"]');
    expect(params(w.page).get('comp')).toBe('layernorm');
    expectNoErrors(w.errors);
  });

  it('never asks for the full trace: none for Residual and FFN, two activations for LayerNorm', async () => {
    await waitReady(w.page);
    expect(blockRequests.length).toBeGreaterThan(5);
    for (const { body, bytes } of blockRequests) {
      if (Array.isArray(body.trace)) expect(body.trace).toHaveLength(2);
      else expect(body.trace).toBe(false);
      expect(bytes).toBeLessThan(200_000);
    }
  });

  it('a new sentence: the old token’s residual and FFN answers are not drawn under the new heading while its own are asked', async () => {
    for (const comp of ['residual', 'ffn'] as const) {
      const u = await openPage(browser, base, `?page=other-half&comp=${comp}`);
      await waitReady(u.page);
      await expectText(u.page, '[data-testid="tracked"]', '19');
      const oldStep = step(await tracker(19), 0, comp === 'residual' ? 'residual 1' : 'ffn');
      // the answers that depend on the tracked token's vector are held back until released
      const path = comp === 'residual' ? '/api/compute/residual' : '/api/compute/ffn';
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      await u.page.route(`**${path}`, async (route) => {
        await held;
        await route.continue();
      });
      await u.page.fill('[data-testid="text-input"]', 'hello');
      // the block's answer for "hello" is shown (its heading) while the dependent answer waits
      await expectText(u.page, '[data-testid="tracked"]', '4');
      await u.page.waitForTimeout(300);
      const b = await api<BlockResponse>(base, '/api/compute/block', { model: 'chars-small', text: 'hello', track: 4, trace: false });
      const newStep = b.tracker.find((s) => s.block === 0 && s.name === (comp === 'residual' ? 'residual 1' : 'ffn'))!;
      if (comp === 'residual') {
        const oldR = await api<ResidualResponse>(base, '/api/compute/residual', { x: [oldStep.before], f: [oldStep.increment], alpha: 1 });
        const shown = await u.page.evaluate(() => document.querySelector('[data-testid="norm-x"]')?.getAttribute('data-raw') ?? null);
        expect(shown, 'the last sentence’s ‖x‖ under the new heading').not.toBe(String(oldR.norms[0].x));
        expect(shown).toBeNull();
        await expect(u.page.locator('[data-testid="residual-bars"]').count()).resolves.toBe(0);
        release();
        const r = await api<ResidualResponse>(base, '/api/compute/residual', { x: [newStep.before], f: [newStep.increment], alpha: 1 });
        await expectNum(u.page, 'norm-x', r.norms[0].x);
      } else {
        const oldF = await api<FfnResponse>(base, '/api/compute/ffn', { model: 'chars-small', layer: 0, x: [oldStep.before], top_k: 8 });
        const shown = await u.page.evaluate(() => document.querySelector('[data-testid="active-fraction"]')?.getAttribute('data-raw') ?? null);
        expect(shown, 'the last sentence’s active fraction under the new heading').not.toBe(String(oldF.top_units[0].active_fraction));
        expect(shown).toBeNull();
        await expect(u.page.locator('[data-testid="top-units"]').count()).resolves.toBe(0);
        // the hidden layer drawn is the new token's (from the block answer shown)
        await expect(u.page.locator('[data-testid="ffn-hidden"]').count()).resolves.toBe(1);
        release();
        const f = await api<FfnResponse>(base, '/api/compute/ffn', { model: 'chars-small', layer: 0, x: [newStep.before], top_k: 8 });
        await expectNum(u.page, 'active-fraction', f.top_units[0].active_fraction);
        const units = (await tableTexts(u.page, '[data-testid="top-units"]')).map((row) => Number(row[0]));
        expect(units).toEqual(f.top_units[0].units.map((x) => x.unit));
      }
      await waitReady(u.page);
      expectNoErrors(u.errors);
      await u.page.close();
    }
  });

  it('an API refusal is a clear message', async () => {
    const bad = 'Zebra Z';
    await w.page.fill('[data-testid="text-input"]', bad);
    await w.page.waitForSelector('[data-testid="error"]');
    const refused = await apiStatus(base, '/api/compute/block', { model: 'chars-small', text: bad, track: 5, trace: ['blocks.0.hook_resid_pre', 'blocks.0.ln1.hook_out'], top_k: 3 });
    expect(refused.status).toBe(400);
    const msg = await w.page.locator('[data-testid="error"]').textContent();
    expect(msg).toContain('The engine refused');
    expect(msg).toContain(refused.json.error.message);
    await screenshot(w.page, 'other-half-refusal');
    expectNoErrors(w.errors, [/status of 400/]);
  });
});
