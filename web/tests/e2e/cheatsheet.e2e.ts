// The cheat sheet (the course's last page, seed 003's summary table): one row per idea with its four cells, laid out
// as a table on a wide screen, and every link of every row opening the widget it names, in the state it names.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { launch, openPage, screenshot, type Browser, type WatchedPage } from './browser';
import { expectNoErrors, expectText, waitReady } from './helpers';
import { PAGES } from '../../src/lib/pages';
import { parseUrl } from '../../src/lib/state';
import { readLessons } from '../../plugins/lessons';
import { repo } from './server';

const base = inject('baseUrl');
const lessons = readLessons(path.resolve(repo));
const ROWS = ['residual', 'layernorm', 'pre-norm', 'ffn', 'memoization'];
let browser: Browser;
let w: WatchedPage;

beforeAll(async () => {
  browser = await launch();
  w = await openPage(browser, base, '?page=cheatsheet');
});
afterAll(async () => browser?.close());

/** What shows that the page opened in the link's state (beyond the URL): its widget, drawn with that state. */
async function widgetShown(page: WatchedPage['page'], target: URLSearchParams, hash: string) {
  const p = target.get('page')!;
  if (p === 'train') {
    // a preset's link opens that preset's two configurations
    const preset = target.get('preset') ?? 'prepost';
    await page.waitForSelector(`[data-testid="preset-${preset}"][aria-pressed="true"]`);
    const shown = async () => ({
      layers: [await page.inputValue('[data-testid="a-layers"]'), await page.inputValue('[data-testid="b-layers"]')],
      place: [await page.inputValue('[data-testid="a-place"]'), await page.inputValue('[data-testid="b-place"]')],
      norm: [await page.inputValue('[data-testid="a-norm"]'), await page.inputValue('[data-testid="b-norm"]')],
      res: [await page.isChecked('[data-testid="a-res"]'), await page.isChecked('[data-testid="b-res"]')],
    });
    const want = {
      residual: { layers: ['8', '8'], place: ['pre', 'pre'], norm: ['layernorm', 'layernorm'], res: [true, false] },
      layernorm: { layers: ['8', '8'], place: ['post', 'post'], norm: ['layernorm', 'none'], res: [true, true] },
      prepost: { layers: ['12', '12'], place: ['pre', 'post'], norm: ['layernorm', 'layernorm'], res: [true, true] },
    }[preset];
    expect(await shown(), `the ${preset} preset's configurations`).toEqual(want);
  } else {
    await waitReady(page);
  }
  if (p === 'course') {
    const step = Number(target.get('step') ?? 0);
    await expect(page.locator(`[data-testid="course-step-${step}"]`).getAttribute('aria-current')).resolves.toBe('step');
    await expect(page.locator('[data-testid="course-vectors"]').count()).resolves.toBe(1);
  }
  if (p === 'other-half') await expect(page.locator('[data-testid="component"] input:checked').getAttribute('value')).resolves.toBe(target.get('comp') ?? 'residual');
  if (p === 'gradflow' && target.get('residual') === '0') await expect(page.locator('[data-testid="residual"] input[value="off"]').isChecked()).resolves.toBe(true);
  if (hash) {
    await page.waitForFunction((id) => document.getElementById(id)?.classList.contains('flash'), hash);
    expect(await page.evaluate((id) => Math.abs(document.getElementById(id)!.getBoundingClientRect().top) < innerHeight / 2, hash)).toBe(true);
  }
}

describe('the cheat sheet', () => {
  it('has the seed’s five rows, laid out as a table with a header on a wide screen', async () => {
    await w.page.waitForSelector('[data-testid="cheatsheet"]');
    await expect(w.page.locator('main h1').innerText()).resolves.toBe(lessons.cheatsheet.title);
    const rows = await w.page.$$eval('[data-testid="cheatsheet"] section.lesson', (ss) => ss.map((s) => s.id));
    expect(rows).toEqual(ROWS);
    // one row per section: its name and four cells side by side, at the header's columns
    const head = await w.page.$$eval('.cheatsheet-head span', (ss) => ss.map((s) => [s.textContent, Math.round(s.getBoundingClientRect().left)]));
    expect(head.map((h) => h[0])).toEqual(['Idea', 'Computes', 'For', 'Key property', 'See it']);
    for (const id of ROWS) {
      const lefts = await w.page.$$eval(`#${id} h2, #${id} li`, (els) => els.map((e) => Math.round(e.getBoundingClientRect().left)));
      expect(lefts, id).toEqual(head.map((h) => h[1]));
    }
    await screenshot(w.page, 'cheatsheet');
    expectNoErrors(w.errors);
  });

  it('every link of every row opens the widget it names, in that state', { timeout: 240_000 }, async () => {
    const links = await w.page.$$eval('[data-testid="cheatsheet"] a[data-app-link]', (as) => as.map((a) => ({ href: a.getAttribute('href')!, row: a.closest('section')!.id })));
    expect(new Set(links.map((l) => l.row))).toEqual(new Set(ROWS));
    expect(links.length).toBeGreaterThanOrEqual(15);
    const u = await openPage(browser, base, '?page=cheatsheet');
    await u.page.waitForSelector('[data-testid="cheatsheet"]');
    await u.page.evaluate(() => ((window as unknown as { __marker: number }).__marker = 1));
    for (const [k, l] of links.entries()) {
      await u.page.locator('[data-testid="cheatsheet"] a[data-app-link]').nth(k).click();
      const [query, hash = ''] = l.href.split('#');
      const want = new URLSearchParams(query);
      await u.page.waitForFunction((p) => new URLSearchParams(location.search).get('page') === p, want.get('page'));
      // every field the link names has its value in the state opened (a default is left out of the URL)
      const opened = parseUrl(PAGES, new URL(u.page.url()).search);
      const named = parseUrl(PAGES, query);
      expect(opened.page).toBe(named.page);
      for (const key of want.keys()) if (key !== 'page') expect(opened.values[key], `${l.href}: ${key}`).toEqual(named.values[key]);
      await expectText(u.page, 'main h1', lessons[want.get('page')!].title);
      await widgetShown(u.page, want, hash);
      // followed inside the app (no page load); the back button returns to the sheet
      expect(await u.page.evaluate(() => (window as unknown as { __marker?: number }).__marker), l.href).toBe(1);
      await u.page.goBack();
      await u.page.waitForSelector('[data-testid="lesson-cheatsheet-memoization"]');
    }
    expectNoErrors(u.errors);
    await u.page.close();
  });
});
