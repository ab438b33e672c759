// Seeds 001 and 004: the block diagram from the config, the live data path, each placement's formulas, and the
// measured Pre-LN vs Post-LN table.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { launch, openPage, screenshot, type Browser, type WatchedPage } from './browser';
import { api, choose, expectNoErrors, expectNum, expectText, params, press, tableTexts, waitReady } from './helpers';
import { fmt } from '../../src/lib/format';
import type { BlockResponse, GradFlowResponse, TrackerStep } from '../../src/lib/api';

const base = inject('baseUrl');
const TEXT = 'Four score and seven';
let browser: Browser;
let w: WatchedPage;

async function steps(placement: string, norm = 'layernorm', residual = true, track = 19, block = 0): Promise<TrackerStep[]> {
  const b = await api<BlockResponse>(base, '/api/compute/block', {
    model: 'chars-small',
    text: TEXT,
    track,
    trace: false,
    overrides: { placement, norm, residual },
  });
  expect(b.config.placement).toBe(placement);
  return b.tracker.filter((s) => s.block === block);
}
const nodeOrder = (page: WatchedPage['page']) =>
  page.$$eval('[data-testid="block-diagram"] g[role="button"]', (gs) => gs.map((g) => g.getAttribute('data-testid')));
const flow = (n_layers: number, placement: string) =>
  api<GradFlowResponse>(base, '/api/gradient-flow', { n_layers, placement, norm: 'layernorm', residual: true, batch: 4, seq_len: 20, seed: 0 });

beforeAll(async () => {
  browser = await launch();
  w = await openPage(browser, base, '?page=addnorm');
});
afterAll(async () => browser?.close());

describe('Add & Norm (seeds 001, 004)', () => {
  it('draws the model’s pre-LN block and follows the token through it', async () => {
    await waitReady(w.page);
    expect(await nodeOrder(w.page)).toEqual(['node-ln1', 'node-attention', 'node-residual-1', 'node-ln2', 'node-ffn', 'node-residual-2']);
    const s = await steps('pre');
    expect(s.map((x) => x.name)).toEqual(['ln1', 'attention', 'residual 1', 'ln2', 'ffn', 'residual 2']);
    await expectText(w.page, '[data-testid="step-title"]', 'Step 1 of 6: ln1 (layernorm, block 0, token 19 “n”)');
    await expectNum(w.page, 'step-mean', s[0].mean!);
    await expectNum(w.page, 'step-rstd', s[0].rstd!);
    await w.page.click('[data-testid="step-next"]');
    await w.page.click('[data-testid="step-next"]');
    expect(params(w.page).get('step')).toBe('2');
    await expectNum(w.page, 'step-alpha', s[2].alpha!);
    // the step's vectors: read feature 3 of `after` with the keyboard
    await w.page.focus('[data-testid="step-after"] svg');
    await press(w.page, 'ArrowDown', 3);
    await expectNum(w.page, 'step-after-readout', s[2].after[3]);
    await screenshot(w.page, 'addnorm-pre');
  });

  it('post placement: norms after the additions; the attention step’s heads', async () => {
    await choose(w.page, 'placement', 'post');
    await waitReady(w.page);
    expect(await nodeOrder(w.page)).toEqual(['node-attention', 'node-residual-1', 'node-ln1', 'node-ffn', 'node-residual-2', 'node-ln2']);
    const s = await steps('post');
    expect(s.map((x) => x.name)).toEqual(['attention', 'residual 1', 'ln1', 'ffn', 'residual 2', 'ln2']);
    const heads = s[0].pattern!.map((row) => {
      let j = 0;
      row.forEach((p, i) => (p! > row[j]! ? (j = i) : 0));
      return fmt(row[j]);
    });
    expect((await tableTexts(w.page, '[data-testid="step-pattern"]')).map((r) => r[2])).toEqual(heads);
    // a diagram node from the keyboard
    await w.page.focus('[data-testid="node-ln1"]');
    await w.page.keyboard.press('Enter');
    expect(params(w.page).get('step')).toBe('2');
    await expectNum(w.page, 'step-mean', s[2].mean!);
    await expectNum(w.page, 'step-rstd', s[2].rstd!);
    await screenshot(w.page, 'addnorm-post');
  });

  it('no norm, no residual: the diagram and the path follow the config', async () => {
    await choose(w.page, 'norm', 'none');
    await w.page.uncheck('[data-testid="residual"]');
    await waitReady(w.page);
    expect(await nodeOrder(w.page)).toEqual(['node-attention', 'node-residual-1', 'node-ffn', 'node-residual-2']);
    await expect(w.page.locator('[data-testid="block-diagram"] path.skip').count()).resolves.toBe(0);
    const s = await steps('post', 'none', false);
    await w.page.click('[data-testid="node-residual-1"]');
    await expectNum(w.page, 'step-alpha', s[1].alpha!);
    await choose(w.page, 'norm', 'layernorm');
    await w.page.check('[data-testid="residual"]');
    await waitReady(w.page);
    await expect(w.page.locator('[data-testid="block-diagram"] path.skip').count()).resolves.toBe(2);
  });

  it('the Pre-LN vs Post-LN table is measured, at the chosen depth', async () => {
    let pre = await flow(12, 'pre');
    let post = await flow(12, 'post');
    const check = async () => {
      await expectNum(w.page, 'pre-g1', pre.layers[0].grad_norm_resid);
      await expectNum(w.page, 'post-g1', post.layers[0].grad_norm_resid);
      await expectNum(w.page, 'pre-gN', pre.layers.at(-1)!.grad_norm_resid);
      await expectNum(w.page, 'post-gN', post.layers.at(-1)!.grad_norm_resid);
      await expectNum(w.page, 'pre-std', pre.layers.at(-1)!.act_std);
      await expectNum(w.page, 'post-std', post.layers.at(-1)!.act_std);
    };
    await check();
    await w.page.focus('[data-testid="depth"]');
    await press(w.page, 'ArrowRight', 12);
    await waitReady(w.page);
    expect(params(w.page).get('depth')).toBe('24');
    pre = await flow(24, 'pre');
    post = await flow(24, 'post');
    await check();
    expectNoErrors(w.errors);
  });

  it('while the table is measured at a new depth, its rows say the depth of the numbers shown', async () => {
    const u = await openPage(browser, base, '?page=addnorm');
    await waitReady(u.page);
    const pre12 = await flow(12, 'pre');
    await expectNum(u.page, 'pre-gN', pre12.layers.at(-1)!.grad_norm_resid);
    await expect(u.page.locator('[data-testid="prepost"]').innerText()).resolves.toContain('at layer 12 (measured)');
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    await u.page.route('**/api/gradient-flow', async (route) => {
      await held;
      await route.continue();
    });
    await u.page.focus('[data-testid="depth"]');
    await press(u.page, 'ArrowRight', 12);
    await u.page.waitForSelector('[data-testid="widget"][data-status="pending"]');
    await u.page.waitForTimeout(400);
    expect(params(u.page).get('depth')).toBe('24');
    // the 12-layer numbers are still shown: said as 12 layers, not as the slider's 24
    await expectNum(u.page, 'pre-gN', pre12.layers.at(-1)!.grad_norm_resid);
    const table = await u.page.locator('[data-testid="prepost"]').innerText();
    expect(table, 'the 12-layer numbers said as the slider’s 24 layers').toContain('at layer 12 (measured)');
    expect(table).not.toContain('at layer 24');
    await expect(u.page.locator('[data-testid="prepost-depth"]').innerText()).resolves.toBe('12');
    release();
    await waitReady(u.page);
    const pre24 = await flow(24, 'pre');
    await expectNum(u.page, 'pre-gN', pre24.layers.at(-1)!.grad_norm_resid);
    await expect(u.page.locator('[data-testid="prepost-depth"]').innerText()).resolves.toBe('24');
    expectNoErrors(u.errors);
    await u.page.close();
  });
});
