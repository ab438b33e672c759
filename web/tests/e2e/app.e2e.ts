// The whole app: navigation, state in the URL (reload, back), formulas on focus, every page at 1280×800 and on a
// phone-sized viewport.
import { describe, expect, inject, it } from 'vitest';
import { openPage, screenshot, type Browser, withBrowsers } from './browser';
import { expectNoErrors, horizontalOverflow, params, waitReady } from './helpers';
import { PAGE_TITLES, PAGES } from '../../src/lib/pages';

const base = inject('baseUrl');
const pages = Object.keys(PAGES) as (keyof typeof PAGES)[];
let desktop: Browser;
let phone: Browser;
withBrowsers((d, p) => ((desktop = d), (phone = p)));

describe('the app', () => {
  it('navigates between every page; the back button restores the previous one', async () => {
    const w = await openPage(desktop, base, '');
    await waitReady(w.page);
    for (const p of pages) {
      await w.page.click(`[data-testid="nav-${p}"]`);
      expect(params(w.page).get('page')).toBe(p);
      await expect(w.page.locator(`[data-testid="nav-${p}"]`).getAttribute('aria-current')).resolves.toBe('page');
      await expect(w.page.title()).resolves.toBe(`${PAGE_TITLES[p].title} — BlockLab`);
      await expect(w.page.locator('main h1').count()).resolves.toBe(1);
    }
    // the last two pages visited before the cheat sheet: Train, then Add & Norm
    await w.page.goBack();
    expect(params(w.page).get('page')).toBe('train');
    await w.page.goBack();
    expect(params(w.page).get('page')).toBe('addnorm');
    await waitReady(w.page);
    await w.page.waitForSelector('[data-testid="block-diagram"]');
    expectNoErrors(w.errors);
    await w.page.close();
  });

  it('opens a shared URL in the same state, and keeps it on reload', async () => {
    const w = await openPage(desktop, base, '?page=layernorm&tab=variance&gamma=2&norm=layernorm&eps=0.001');
    await waitReady(w.page);
    await expect(w.page.locator('[data-testid="tab-variance"]').getAttribute('aria-selected')).resolves.toBe('true');
    expect(await w.page.inputValue('[data-testid="gamma"]')).toBe('2');
    expect(await w.page.inputValue('[data-testid="eps"]')).toBe('0.001');
    // `norm=layernorm` is a default: the app writes the canonical URL without it
    expect(new URL(w.page.url()).search).toBe('?page=layernorm&tab=variance&gamma=2&eps=0.001');
    await w.page.reload();
    await waitReady(w.page);
    await expect(w.page.locator('[data-testid="tab-variance"]').getAttribute('aria-selected')).resolves.toBe('true');
    // a URL with nonsense in it opens the page with defaults
    await w.page.goto(base + '/?page=gradflow&layers=9999&norm=bogus');
    await waitReady(w.page);
    expect(await w.page.inputValue('[data-testid="layers"]')).toBe('100');
    expect(new URL(w.page.url()).search).toBe('?page=gradflow&layers=100');
    expectNoErrors(w.errors);
    await w.page.close();
  });

  it('shows a number’s formula on keyboard focus (and hover)', async () => {
    const w = await openPage(desktop, base, '?page=layernorm');
    await waitReady(w.page);
    const num = w.page.locator('[data-testid="summary-sigma-0"]');
    const tip = num.locator('.tip');
    await expect(tip.isVisible()).resolves.toBe(false);
    await num.focus();
    await expect(tip.isVisible()).resolves.toBe(true);
    await expect(tip.innerText()).resolves.toContain('σ = √σ²');
    await w.page.keyboard.press('Tab');
    await expect(tip.isVisible()).resolves.toBe(false);
    await w.page.hover('[data-testid="summary-mean-1"]');
    await expect(w.page.locator('[data-testid="summary-mean-1"] .tip').isVisible()).resolves.toBe(true);
    // the first Tab reaches the skip link
    await w.page.goto(base + '/?page=ffn');
    await w.page.keyboard.press('Tab');
    await expect(w.page.evaluate(() => document.activeElement?.textContent)).resolves.toBe('Skip to the page');
    await waitReady(w.page);
    expectNoErrors(w.errors);
    await w.page.close();
  });

  it('every page works on a phone-sized viewport (no sideways scrolling) and at 1280×800', async () => {
    for (const [b, name] of [
      [phone, 'phone'],
      [desktop, 'desktop'],
    ] as const) {
      for (const p of pages) {
        const w = await openPage(b, base, `?page=${p}`);
        // the Train page asks nothing until a run is started; the cheat sheet has no widget, only its table
        if (p === 'cheatsheet') await w.page.waitForSelector('[data-testid="cheatsheet"]');
        else if (p !== 'train') await waitReady(w.page);
        expect(await horizontalOverflow(w.page), `${p} on ${name}`).toBeLessThanOrEqual(0);
        if (name === 'phone') await screenshot(w.page, `${p}-phone`);
        expectNoErrors(w.errors);
        await w.page.close();
      }
    }
  });
});
