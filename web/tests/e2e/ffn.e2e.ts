// Seed 002's page: click a position → pre-activation, activation, output; ReLU / GELU / tanh-GELU; d_ff (the
// model's trained layer at its own width, fresh `init` weights at any other); the engine's own source.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { launch, openPage, screenshot, type Browser, type WatchedPage } from './browser';
import { api, choose, expectNoErrors, expectNum, expectText, params, press, tableTexts, waitReady } from './helpers';
import { fmt } from '../../src/lib/format';
import { strongestPushes } from '../../src/lib/ffn';
import { readEngineExcerpts } from '../../plugins/engine-source';
import type { BlockResponse, FfnResponse } from '../../src/lib/api';

const base = inject('baseUrl');
const TEXT = 'Four score and seven';
const repo = path.resolve(__dirname, '../../..');
let browser: Browser;
let w: WatchedPage;

/**
 * What the page asks: the tracked position's FFN input row (the tracker), then the FFN on it — with layer
 * `layer`'s trained weights, or with fresh ones (`init: {d_ff, seed}`) when given.
 */
async function ffnAt(pos: number, layer: number, activation: string, init?: { d_ff: number; seed: number }): Promise<FfnResponse> {
  const b = await api<BlockResponse>(base, '/api/compute/block', { model: 'chars-small', text: TEXT, track: pos, trace: false });
  const row = b.tracker.find((s) => s.block === layer && s.component === 'ffn')!.before;
  const body = init ? { x: [row], init, activation, top_k: 8 } : { model: 'chars-small', layer, x: [row], activation, top_k: 8 };
  return api<FfnResponse>(base, '/api/compute/ffn', body);
}

/** The bodies of the /api/compute/ffn requests the page sends from now on. */
function recordFfnRequests(): { bodies: any[]; stop(): void } {
  const bodies: any[] = [];
  const on = (req: { url(): string; postDataJSON(): any }) => {
    if (req.url().endsWith('/api/compute/ffn')) bodies.push(req.postDataJSON());
  };
  w.page.on('request', on);
  return { bodies, stop: () => w.page.off('request', on) };
}

async function expectFfn(r: FfnResponse) {
  await expectNum(w.page, 'active-fraction', r.top_units[0].active_fraction);
  await expectText(w.page, '[data-testid="dff-used"]', String(r.d_ff));
  expect(await tableTexts(w.page, '[data-testid="top-units"]')).toEqual(r.top_units[0].units.map((u) => [String(u.unit), fmt(u.pre), fmt(u.act)]));
}

beforeAll(async () => {
  browser = await launch();
  w = await openPage(browser, base, '?page=ffn');
});
afterAll(async () => browser?.close());

describe('FFN (seed 002)', () => {
  it('shows the last position’s three vectors, computed by the model’s FFN', async () => {
    await waitReady(w.page);
    await expectFfn(await ffnAt(19, 0, 'gelu_tanh'));
    for (const id of ['bars-pre', 'bars-act']) await expect(w.page.locator(`[data-testid="${id}"] rect.bar`).count()).resolves.toBe(128);
    await expect(w.page.locator('[data-testid="bars-out"] rect.bar').count()).resolves.toBe(64);
    await screenshot(w.page, 'ffn');
  });

  it('readable bars: wide enough, indices down the side, the top units named; what the layer refines, from out', async () => {
    const r = await ffnAt(19, 0, 'gelu_tanh');
    const top = r.top_units[0].units.map((u) => u.unit);
    for (const id of ['bars-pre', 'bars-act']) {
      const box = await w.page.locator(`[data-testid="${id}"] svg`).boundingBox();
      expect(box!.width, `${id} is drawn ${box!.width} px wide`).toBeGreaterThanOrEqual(260);
      // every unit index written down the left at a regular step, starting at 0
      const idx = await w.page.$$eval(`[data-testid="${id}"] text.index`, (ts) => ts.map((t) => Number(t.textContent)));
      expect(idx[0]).toBe(0);
      expect(idx.length).toBeGreaterThanOrEqual(8);
      expect(idx.every((v, k) => v === k * idx[1])).toBe(true);
      // the most active units are named beside their bars, apart from each other
      const named = await w.page.$$eval(`[data-testid="${id}"] g.hi-name`, (gs) =>
        gs.map((g) => ({ unit: Number(g.getAttribute('data-unit')), text: g.querySelector('text')!.textContent, y: Number(g.querySelector('text')!.getAttribute('y')) })),
      );
      expect(named.map((n) => n.unit)).toEqual([...top].sort((a, b) => a - b));
      expect(named.every((n) => n.text === String(n.unit))).toBe(true);
      for (let k = 1; k < named.length; k++) expect(named[k].y - named[k - 1].y).toBeGreaterThanOrEqual(12.9);
    }
    // the line saying what this layer refines: the features the output pushes most, with the engine's values
    const pushes = strongestPushes(r.out[0], 3);
    for (const [k, p] of pushes.entries()) {
      await expect(w.page.getAttribute(`[data-testid="refines-feature-${k}"]`, 'data-feature')).resolves.toBe(String(p.feature));
      await expectNum(w.page, `refines-value-${k}`, p.value);
    }
    const said = await w.page.locator('[data-testid="refines"]').innerText();
    expect(said).toContain(`feature ${pushes[0].feature} ${pushes[0].value > 0 ? 'up' : 'down'} most`);
    expect(said).toContain(`hidden units ${top.slice(0, 3).join(', ')}`);
    // and the output chart names the same features
    const outNamed = await w.page.$$eval('[data-testid="bars-out"] g.hi-name', (gs) => gs.map((g) => Number(g.getAttribute('data-unit'))));
    expect(outNamed).toEqual(pushes.map((p) => p.feature).sort((a, b) => a - b));
    await screenshot(w.page, 'ffn-bars');
  });

  it('click a position → its vectors; read single bars with the keyboard', async () => {
    await w.page.click('[data-testid="token-5"]');
    await waitReady(w.page);
    await expectText(w.page, '[data-testid="tracked"]', '5');
    const r = await ffnAt(5, 0, 'gelu_tanh');
    await expectFfn(r);
    await w.page.focus('[data-testid="bars-pre"] svg');
    await press(w.page, 'ArrowDown', 2);
    await expectNum(w.page, 'bars-pre-readout', r.pre[0][2]);
    await w.page.focus('[data-testid="bars-act"] svg');
    await press(w.page, 'End', 1);
    await expectNum(w.page, 'bars-act-readout', r.act[0][127]);
    await w.page.focus('[data-testid="bars-out"] svg');
    await press(w.page, 'ArrowDown', 1);
    await expectNum(w.page, 'bars-out-readout', r.out[0][1]);
  });

  it('switches the activation: ReLU, GELU', async () => {
    await choose(w.page, 'activation', 'relu');
    await waitReady(w.page);
    expect(params(w.page).get('act')).toBe('relu');
    const relu = await ffnAt(5, 0, 'relu');
    await expectFfn(relu);
    expect(relu.act[0].every((a) => a !== null && a >= 0)).toBe(true);
    await choose(w.page, 'activation', 'gelu');
    await waitReady(w.page);
    await expectFfn(await ffnAt(5, 0, 'gelu'));
  });

  it('a d_ff the model lacks: fresh weights (init) equal to the API’s, said on the page; the seed; the model’s width', async () => {
    const sent = recordFfnRequests();
    await w.page.selectOption('[data-testid="dff"]', '256');
    await waitReady(w.page);
    expect(params(w.page).get('dff')).toBe('256');
    const wide = await ffnAt(5, 0, 'gelu', { d_ff: 256, seed: 0 });
    expect(wide.weights).toEqual({ init: { d_ff: 256, seed: 0 } });
    await expectFfn(wide);
    await expect(w.page.locator('[data-testid="bars-pre"] rect.bar').count()).resolves.toBe(256);
    await w.page.focus('[data-testid="bars-pre"] svg');
    await press(w.page, 'End', 1);
    await expectNum(w.page, 'bars-pre-readout', wide.pre[0][255]);
    const said = await w.page.locator('[data-testid="weights-source"]').innerText();
    for (const part of ['fresh, untrained', 'd_ff = 256', 'seed 0', 'nn.Linear', 'd_ff = 128']) expect(said).toContain(part);
    await expect(w.page.locator('[data-testid="model-badge"]').innerText()).resolves.toContain('fresh weights (d_ff = 256, seed 0)');
    // the page asked for exactly that: fresh weights, no model's, no explicit ones
    const last = sent.bodies.at(-1);
    expect(last.init).toEqual({ d_ff: 256, seed: 0 });
    expect(last.model).toBeUndefined();
    expect(last.w1).toBeUndefined();
    await screenshot(w.page, 'ffn-fresh-256');

    // another seed, other weights
    await w.page.fill('[data-testid="wseed"]', '7');
    await w.page.press('[data-testid="wseed"]', 'Enter');
    await waitReady(w.page);
    expect(params(w.page).get('wseed')).toBe('7');
    const seven = await ffnAt(5, 0, 'gelu', { d_ff: 256, seed: 7 });
    expect(seven.pre[0]).not.toEqual(wide.pre[0]);
    await expectFfn(seven);
    await expectText(w.page, '[data-testid="weights-source"] strong', 'Weights shown:');
    await expect(w.page.locator('[data-testid="weights-source"]').innerText()).resolves.toContain('seed 7');

    // narrower than the model's: fresh weights too (no cut-down model weights); layer 1 changes the input row only
    await w.page.selectOption('[data-testid="dff"]', '32');
    await waitReady(w.page);
    await expectFfn(await ffnAt(5, 0, 'gelu', { d_ff: 32, seed: 7 }));
    await expect(w.page.locator('[data-testid="bars-pre"] rect.bar').count()).resolves.toBe(32);
    await choose(w.page, 'layer', '1');
    await waitReady(w.page);
    await expectFfn(await ffnAt(5, 1, 'gelu', { d_ff: 32, seed: 7 }));

    // the model's own width: its trained layer again, and no seed to choose
    await w.page.selectOption('[data-testid="dff"]', '128');
    await waitReady(w.page);
    await expectFfn(await ffnAt(5, 1, 'gelu'));
    await expect(w.page.locator('[data-testid="weights-source"]').innerText()).resolves.toContain("chars-small's trained FFN of layer 1");
    await expect(w.page.locator('[data-testid="wseed"]').count()).resolves.toBe(0);
    expect(sent.bodies.at(-1)).toMatchObject({ model: 'chars-small', layer: 1 });
    sent.stop();
    expect(sent.bodies.every((b) => b.w1 === undefined)).toBe(true);
  });

  it('a shared URL with any width opens with those fresh weights', async () => {
    const u = await openPage(browser, base, '?page=ffn&dff=100&wseed=3&pos=2&act=relu');
    await waitReady(u.page);
    await expect(u.page.locator('[data-testid="dff"]').inputValue()).resolves.toBe('100');
    await expect(u.page.locator('[data-testid="wseed"]').inputValue()).resolves.toBe('3');
    const r = await ffnAt(2, 0, 'relu', { d_ff: 100, seed: 3 });
    await expectNum(u.page, 'active-fraction', r.top_units[0].active_fraction);
    expect(await tableTexts(u.page, '[data-testid="top-units"]')).toEqual(r.top_units[0].units.map((x) => [String(x.unit), fmt(x.pre), fmt(x.act)]));
    expectNoErrors(u.errors);
    await u.page.close();
  });

  it('shows the engine’s FFN source, extracted from the tree', async () => {
    const shown = await w.page.locator('[data-testid="engine-source"]').innerText();
    for (const e of readEngineExcerpts(repo)) {
      await expect(w.page.locator(`[data-testid="source-${e.name}"] h4`).innerText()).resolves.toContain(`${e.file} lines ${e.firstLine}–${e.lastLine}`);
      for (const line of e.code.split('\n')) if (line.trim()) expect(shown).toContain(line.trim());
    }
    expectNoErrors(w.errors);
  });
});
