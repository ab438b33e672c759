// The sentence input of the three pages that read one (Other half, FFN, Add & Norm): an empty sentence, a
// character outside the model's alphabet (marked, said with the real character, the old numbers gone) and the
// error going away once its cause is fixed.
import { describe, expect, inject, it } from 'vitest';
import { openPage, screenshot, withBrowsers, type Browser, type WatchedPage } from './browser';
import { api, apiStatus, expectNoErrors, expectNum, expectText, waitReady } from './helpers';
import type { BlockResponse, ModelInfo, ResidualResponse } from '../../src/lib/api';

const base = inject('baseUrl');
const TEXT = 'Four score and seven';
let desktop: Browser;
withBrowsers((d) => (desktop = d));

/** What depends on the sentence: its numbers and charts, inside the page's sentence view (none without one). */
async function shownInView(w: WatchedPage) {
  return w.page.evaluate(() => {
    const view = document.querySelector('[data-testid="sentence-view"]');
    return {
      view: !!view,
      nums: view ? view.querySelectorAll('.num').length : 0,
      bars: view ? view.querySelectorAll('figure.chart').length : 0,
      text: view?.textContent ?? '',
    };
  });
}

/** The page's first number computed from the sentence, checked against the API (the page's own request). */
async function expectComputed(w: WatchedPage, page: string, text: string) {
  const pos = [...text].length - 1;
  const b = await api<BlockResponse>(base, '/api/compute/block', { model: 'chars-small', text, track: pos, trace: false });
  if (page === 'other-half') {
    const s = b.tracker.find((t) => t.block === 0 && t.name === 'residual 1')!;
    const r = await api<ResidualResponse>(base, '/api/compute/residual', { x: [s.before], f: [s.increment], alpha: 1 });
    await expectNum(w.page, 'norm-x', r.norms[0].x);
  } else if (page === 'addnorm') {
    await expectNum(w.page, 'step-mean', b.tracker.find((t) => t.block === 0)!.mean!);
  } else {
    await expectText(w.page, '[data-testid="tracked"]', String(pos));
    await w.page.waitForSelector('[data-testid="bars-out"] rect.bar');
  }
}

describe.each(['other-half', 'ffn', 'addnorm'])('the sentence of %s', (page) => {
  it('an empty sentence is a clear prompt, with no token −1 and no stale numbers', async () => {
    const w = await openPage(desktop, base, `?page=${page}`);
    await waitReady(w.page);
    await expectComputed(w, page, TEXT);
    await w.page.fill('[data-testid="text-input"]', '');
    await w.page.waitForSelector('[data-testid="empty-text"]', { timeout: 5000 });
    await expect(w.page.locator('[data-testid="empty-text"]').innerText()).resolves.toMatch(/Type a sentence/);
    const shown = await shownInView(w);
    expect(shown.nums, 'numbers left from the last sentence').toBe(0);
    expect(shown.bars, 'bars left from the last sentence').toBe(0);
    expect(await w.page.locator('main').innerText()).not.toMatch(/token\s*[−-]1/);
    await expect(w.page.locator('[data-testid="error"]').count()).resolves.toBe(0);
    await screenshot(w.page, `${page}-empty-sentence`);
    // typing again brings the engine's numbers back
    await w.page.fill('[data-testid="text-input"]', 'Four');
    await waitReady(w.page);
    await expectComputed(w, page, 'Four');
    expectNoErrors(w.errors);
    await w.page.close();
  });

  it('a character outside the alphabet: marked, said as it is (not “\\uFFFD”), the old bars gone; fixed, the error goes', async () => {
    const w = await openPage(desktop, base, `?page=${page}`);
    await waitReady(w.page);
    await expectComputed(w, page, TEXT);
    const { models } = await api<{ models: ModelInfo[] }>(base, '/api/models');
    expect(models[0].alphabet).not.toContain('é');
    // type one more character, outside the model's alphabet
    await w.page.focus('[data-testid="text-input"]');
    await w.page.keyboard.press('End');
    await w.page.keyboard.type('é');
    await w.page.waitForSelector('[data-testid="error"]', { timeout: 10_000 });
    const refused = await apiStatus(base, '/api/compute/block', { model: 'chars-small', text: TEXT + 'é', track: 20, trace: false });
    expect(refused.status).toBe(400);
    expect(refused.json.error.field).toBe('text[20]');
    const msg = (await w.page.locator('[data-testid="error"]').innerText()).trim();
    expect(msg).toContain('The engine refused');
    expect(msg).toContain('got "é"');
    expect(msg).not.toContain('\uFFFD');
    // marked below the input, and on its token
    await expect(w.page.locator('[data-testid="text-invalid"]').innerText()).resolves.toContain('“é” (position 20, U+00E9)');
    await expect(w.page.locator('[data-testid="text-input"]').getAttribute('aria-invalid')).resolves.toBe('true');
    await expect(w.page.locator('[data-testid="token-20"]').getAttribute('class')).resolves.toContain('invalid');
    // no numbers of the previous sentence under the new one
    const shown = await shownInView(w);
    expect(shown.nums).toBe(0);
    expect(shown.bars).toBe(0);
    await screenshot(w.page, `${page}-refused-sentence`);
    // fixed: the error and the marks go, the numbers come back
    await w.page.keyboard.press('Backspace');
    await waitReady(w.page);
    await expect(w.page.locator('[data-testid="error"]').count()).resolves.toBe(0);
    await expect(w.page.locator('[data-testid="text-invalid"]').count()).resolves.toBe(0);
    await expect(w.page.locator('[data-testid="text-input"]').getAttribute('aria-invalid')).resolves.not.toBe('true');
    await expectComputed(w, page, TEXT);
    // a refused sentence after a good one, then emptied: no error left behind either
    await w.page.fill('[data-testid="text-input"]', 'Zebra Z');
    await w.page.waitForSelector('[data-testid="error"]', { timeout: 10_000 });
    expect((await shownInView(w)).bars).toBe(0);
    await w.page.fill('[data-testid="text-input"]', '');
    await w.page.waitForSelector('[data-testid="empty-text"]', { timeout: 5000 });
    await expect(w.page.locator('[data-testid="error"]').count()).resolves.toBe(0);
    expectNoErrors(w.errors, [/status of 400/]);
    await w.page.close();
  });

  it('the character the engine refused is marked even when the model’s alphabet is not known (GET /api/models failed)', async () => {
    const page0 = await desktop.context.newPage();
    await page0.route('**/api/models', (r) =>
      r.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: { code: 'unavailable', message: 'models not loaded (test)', field: null } }) }),
    );
    const errors: string[] = [];
    page0.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page0.on('pageerror', (e) => errors.push(e.message));
    await page0.goto(`${base}/?page=${page}&text=${encodeURIComponent('héllo')}`);
    const refused = await apiStatus(base, '/api/compute/block', { model: 'chars-small', text: 'héllo', trace: false });
    expect(refused.json.error.field).toBe('text[1]');
    await page0.waitForSelector('[data-testid="token-1"].invalid', { timeout: 10_000 });
    await expect(page0.locator('.token.invalid').count()).resolves.toBe(1);
    await expect(page0.locator('[data-testid="text-input"]').getAttribute('aria-invalid')).resolves.toBe('true');
    const said = await page0.locator('[data-testid="text-invalid"]').innerText();
    expect(said).toContain('“é” (position 1, U+00E9)');
    expect(said, 'no alphabet is listed to point at').not.toContain('listed above');
    // the character removed: the mark goes with the refusal
    await page0.fill('[data-testid="text-input"]', 'hllo');
    await page0.waitForFunction(() => !document.querySelector('.token.invalid'), undefined, { timeout: 10_000 });
    await expect(page0.locator('[data-testid="text-invalid"]').count()).resolves.toBe(0);
    expectNoErrors(errors, [/status of 503/, /status of 400/, /status of 401/]);
    await page0.close();
  });
});
