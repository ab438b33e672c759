// Seed 002's page: click a position → pre-activation, activation, output; ReLU / GELU / tanh-GELU; d_ff; the
// engine's own source.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { launch, openPage, screenshot, type Browser, type WatchedPage } from './browser';
import { api, choose, expectNoErrors, expectNum, expectText, params, press, tableTexts, waitReady } from './helpers';
import { fmt } from '../../src/lib/format';
import { parseSafetensors } from '../../src/lib/safetensors';
import { ffnWeights } from '../../src/lib/ffn';
import { readEngineExcerpts } from '../../plugins/engine-source';
import type { BlockResponse, FfnResponse } from '../../src/lib/api';

const base = inject('baseUrl');
const TEXT = 'Four score and seven';
const repo = path.resolve(__dirname, '../../..');
let browser: Browser;
let w: WatchedPage;

/** What the page asks: the tracked position's FFN input row (the tracker), then the FFN on it. */
async function ffnAt(pos: number, layer: number, activation: string, weights?: object): Promise<FfnResponse> {
  const b = await api<BlockResponse>(base, '/api/compute/block', { model: 'chars-small', text: TEXT, track: pos, trace: false });
  const row = b.tracker.find((s) => s.block === layer && s.component === 'ffn')!.before;
  const body = weights ? { x: [row], ...weights, activation, top_k: 8 } : { model: 'chars-small', layer, x: [row], activation, top_k: 8 };
  return api<FfnResponse>(base, '/api/compute/ffn', body);
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

  it('a narrower d_ff keeps the layer’s first units (explicit weights), and layer 1', async () => {
    await w.page.selectOption('[data-testid="dff"]', '32');
    await waitReady(w.page);
    expect(params(w.page).get('dff')).toBe('32');
    const buf = readFileSync(path.join(repo, 'models/chars-small.safetensors'));
    const file = parseSafetensors(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    await expectFfn(await ffnAt(5, 0, 'gelu', ffnWeights(file, 0, 64, 128, 32)));
    await expect(w.page.locator('[data-testid="bars-pre"] rect.bar').count()).resolves.toBe(32);
    await choose(w.page, 'layer', '1');
    await waitReady(w.page);
    await expectFfn(await ffnAt(5, 1, 'gelu', ffnWeights(file, 1, 64, 128, 32)));
    await w.page.selectOption('[data-testid="dff"]', '128');
    await waitReady(w.page);
    await expectFfn(await ffnAt(5, 1, 'gelu'));
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
