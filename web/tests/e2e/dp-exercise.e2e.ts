// The gradient-flow page's dp-analogy exercise (issue 14, seed 003): an edit-distance table filled one cell per
// Step, the cells each new cell reads outlined, beside the residual recurrence x_{l+1} = x_l + f_l(x_l) of one
// token of chars-small whose norms are those of the engine's trace.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Page } from 'playwright-core';
import { launch, openPage, PHONE, RESULTS_DIR, screenshot, type Browser, type WatchedPage } from './browser';
import { api, expectNoErrors, expectNum, horizontalOverflow } from './helpers';
import { editTable, subscripts } from '../../src/lib/dp';
import { fmt } from '../../src/lib/format';
import type { BlockResponse } from '../../src/lib/api';

const base = inject('baseUrl');
const EX = '[data-testid="dp-exercise"]';
let browser: Browser;
let w: WatchedPage;

const hypot = (v: number[]) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

/** The engine's stream and increments for the last letter of `text`: x_0 … x_4 and f_0 … f_3 (2 blocks). */
async function recurrence(text: string) {
  const track = [...text].length - 1;
  const b = await api<BlockResponse>(base, '/api/compute/block', { model: 'chars-small', text, track, trace: true });
  const row = (n: string) => (b.trace![n] as number[][])[track];
  const xs = [row('blocks.0.hook_resid_pre'), row('blocks.0.hook_resid_mid'), row('blocks.0.hook_resid_post'), row('blocks.1.hook_resid_mid'), row('blocks.1.hook_resid_post')];
  const fs = [row('blocks.0.hook_attn_out'), row('blocks.0.hook_mlp_out'), row('blocks.1.hook_attn_out'), row('blocks.1.hook_mlp_out')];
  expect(row('blocks.1.hook_resid_pre')).toEqual(xs[2]);
  return { xs, fs };
}

async function ready(page: Page) {
  await page.waitForSelector(`${EX}[data-status="ready"] [data-testid="dp-steps"]`, { timeout: 20_000 });
}

/** The table as shown: text per cell, and each cell's state. */
async function cells(page: Page) {
  return page.$$eval(`${EX} [data-testid="dp-table"] tbody tr`, (trs) =>
    trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => ({ text: td.textContent!.trim(), state: td.getAttribute('data-state') }))),
  );
}

beforeAll(async () => {
  browser = await launch();
  w = await openPage(browser, base, '?page=gradflow');
});
afterAll(async () => browser?.close());

describe('dp-analogy: the edit-distance table beside x_{l+1} = x_l + f_l(x_l)', () => {
  it('starts with the given row and column, nothing of the stack shown yet', async () => {
    await ready(w.page);
    const t = await cells(w.page);
    expect(t.length).toBe(7); // ε + "kitten"
    expect(t[0].map((c) => c.text)).toEqual(['0', '1', '2', '3', '4', '5', '6', '7']);
    expect(t.map((r) => r[0].text)).toEqual(['0', '1', '2', '3', '4', '5', '6']);
    expect(t[1][1]).toEqual({ text: '', state: 'empty' });
    await expect(w.page.textContent('[data-testid="dp-count"]')).resolves.toBe('step 0 of 42');
    await expect(w.page.locator(`${EX} tr[data-shown="true"]`).count()).resolves.toBe(0);
    await expect(w.page.locator(`${EX} tr[data-shown="false"]`).count()).resolves.toBe(4);
  });

  it('each Step fills one cell, outlines the 3 it reads, and moves the stack one sub-layer, with the engine’s norms', async () => {
    const { xs, fs } = await recurrence('kitten sitting');
    await w.page.click('[data-testid="dp-step"]');
    let t = await cells(w.page);
    expect(t[1][1]).toEqual({ text: '1', state: 'new' }); // k → s: substitute
    expect(t[0][0].state).toBe('chosen');
    expect(t[0][1].state).toBe('read');
    expect(t[1][0].state).toBe('read');
    expect(t[1][2].state).toBe('empty');
    await expectNum(w.page, 'dp-norm-x-0', hypot(xs[0]));
    await expectNum(w.page, 'dp-norm-f-0', hypot(fs[0]));
    await expectNum(w.page, 'dp-norm-next-0', hypot(xs[1]));
    let notice = (await w.page.textContent('[data-testid="dp-notice"]'))!;
    expect(notice).toContain('Cell d[1][1] = 1 reused 3 earlier cells (d[0][0] = 0, d[0][1] = 1, d[1][0] = 1)');
    expect(notice).toContain(subscripts(`x_1 = x_0 + f_0, ‖x_1‖ = ${fmt(hypot(xs[1]))}`));
    for (let k = 2; k <= 4; k++) await w.page.click('[data-testid="dp-step"]');
    t = await cells(w.page);
    expect(t[1][4]).toEqual({ text: String(editTable('kitten', 'sitting')[1][4]), state: 'new' });
    for (let l = 0; l < 4; l++) {
      await expectNum(w.page, `dp-norm-x-${l}`, hypot(xs[l]));
      await expectNum(w.page, `dp-norm-f-${l}`, hypot(fs[l]));
      await expectNum(w.page, `dp-norm-next-${l}`, hypot(xs[l + 1]));
    }
    // the engine's stream really is x + f here (pre-LN, α = 1), up to float32 rounding
    for (let l = 0; l < 4; l++) for (let i = 0; i < 64; i++) expect(Math.abs(xs[l + 1][i] - xs[l][i] - fs[l][i])).toBeLessThan(1e-5);
    notice = (await w.page.textContent('[data-testid="dp-notice"]'))!;
    expect(notice).toContain(subscripts(`x_4 = x_0 + f_0 + f_1 + f_2 + f_3, ‖x_4‖ = ${fmt(hypot(xs[4]))}`));
    await expect(w.page.locator(`${EX} tr.sel`).getAttribute('data-testid')).resolves.toBe('dp-step-row-3');
    await w.page.locator(EX).scrollIntoViewIfNeeded();
    await screenshot(w.page, 'dp-exercise-step4');
    await w.page.click('[data-testid="dp-step"]');
    notice = (await w.page.textContent('[data-testid="dp-notice"]'))!;
    expect(notice).toContain('the stack has only 4 sub-layers: its recurrence ended at step 4');
  });

  it('Fill all gives the known distance 3; Reset empties it', async () => {
    await w.page.click('[data-testid="dp-fill"]');
    const t = await cells(w.page);
    const d = editTable('kitten', 'sitting');
    expect(t.map((r) => r.map((c) => Number(c.text)))).toEqual(d);
    expect(t[6][7].state).toBe('new');
    await expect(w.page.textContent('[data-testid="dp-notice"]')).resolves.toContain('the edit distance from “kitten” to “sitting” is 3');
    await expect(w.page.isDisabled('[data-testid="dp-step"]')).resolves.toBe(true);
    await w.page.locator(EX).screenshot({ path: path.join(RESULTS_DIR, 'dp-exercise-full.png') });
    await w.page.click('[data-testid="dp-reset"]');
    await expect(w.page.textContent('[data-testid="dp-count"]')).resolves.toBe('step 0 of 42');
    expect((await cells(w.page))[1][1].text).toBe('');
  });

  it('refuses bad words clearly: not a–z, too long, a letter outside the model’s alphabet', async () => {
    const a = '[data-testid="dp-word-a"]';
    const b = '[data-testid="dp-word-b"]';
    await w.page.fill(a, 'kitten1');
    await expect(w.page.getAttribute(a, 'aria-invalid')).resolves.toBe('true');
    await expect(w.page.textContent('[data-testid="dp-word-a-msg"]')).resolves.toContain('Refused: only the letters a–z (“1” is not one).');
    await expect(w.page.locator('[data-testid="dp-table"]').count()).resolves.toBe(0);
    await expect(w.page.isVisible('[data-testid="dp-refused"]')).resolves.toBe(true);
    await w.page.fill(a, 'abcdefghi');
    await expect(w.page.textContent('[data-testid="dp-word-a-msg"]')).resolves.toContain('at most 8 letters (this has 9)');
    await w.page.fill(a, 'flaw');
    await expect(w.page.getAttribute(a, 'aria-invalid')).resolves.toBe('false');
    // "z" is not in chars-small's alphabet: the engine refuses it, and the word is marked
    await w.page.fill(b, 'pizza');
    await w.page.waitForSelector('[data-testid="dp-word-b"][aria-invalid="true"]');
    await expect(w.page.textContent('[data-testid="dp-word-b-msg"]')).resolves.toContain('Refused by the engine: “z” (letter 3) is not in chars-small');
    await expect(w.page.locator('[data-testid="dp-steps"]').count()).resolves.toBe(0);
    await expect(w.page.textContent('[data-testid="dp-no-stack"]')).resolves.toContain('the engine refused a letter');
    await w.page.screenshot({ path: path.join(RESULTS_DIR, 'dp-exercise-refused.png') });
    await w.page.fill(b, 'lawn');
    await ready(w.page);
    await expect(w.page.getAttribute(b, 'aria-invalid')).resolves.toBe('false');
    await w.page.click('[data-testid="dp-fill"]');
    await expect(w.page.textContent('[data-testid="dp-notice"]')).resolves.toContain('the edit distance from “flaw” to “lawn” is 2');
    const { xs } = await recurrence('flaw lawn');
    await expectNum(w.page, 'dp-norm-next-3', hypot(xs[4]));
    expectNoErrors(w.errors, [/status of 400/]);
  });

  it('on a 390 px phone: fits, no text under 11 px', async () => {
    const phone = await launch(PHONE);
    try {
      const p = await openPage(phone, base, '?page=gradflow');
      await ready(p.page);
      await p.page.click('[data-testid="dp-step"]');
      await p.page.click('[data-testid="dp-step"]');
      await expect(horizontalOverflow(p.page)).resolves.toBeLessThanOrEqual(0);
      const box = (await p.page.locator('[data-testid="dp-table"]').boundingBox())!;
      expect(box.x + box.width).toBeLessThanOrEqual(PHONE.width);
      const small = await p.page.$$eval(`${EX} *`, (els) =>
        els
          .filter((e) => [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent!.replace(/[\s\u200b]/g, '') !== '') && !e.closest('.sr-only, .katex-mathml'))
          .map((e) => ({ t: e.textContent!.trim().slice(0, 30), px: parseFloat(getComputedStyle(e).fontSize) }))
          .filter((s) => s.px < 11),
      );
      expect(small).toEqual([]);
      await p.page.locator(EX).screenshot({ path: path.join(RESULTS_DIR, 'dp-exercise-phone.png') });
      expectNoErrors(p.errors);
    } finally {
      await phone.close();
    }
  });
});
