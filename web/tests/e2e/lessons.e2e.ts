// The lessons' text on the pages (lessons/<page>.md through virtual:lessons): every section on its page with its
// anchor and test id, a URL's #anchor scrolled into view and highlighted, a lesson's app link followed inside the
// app, and on a phone no text under 11 px and display maths that scrolls inside its own box.
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import type { Page } from 'playwright-core';
import { openPage, PHONE, screenshot, type Browser, withBrowsers } from './browser';
import { expectNoErrors, horizontalOverflow, params, waitReady } from './helpers';
import { readLessons } from '../../plugins/lessons';
import { repo } from './server';

const base = inject('baseUrl');
const lessons = readLessons(path.resolve(repo));
/** Sections a page shows only in one state of its widget (the Other-half page: the component being viewed). */
const STATEFUL: Record<string, Record<string, string>> = { 'other-half': { residual: '', layernorm: '&comp=layernorm', ffn: '&comp=ffn' } };

let desktop: Browser;
let phone: Browser;
withBrowsers((d, p) => ((desktop = d), (phone = p)));

const inView = (page: Page, id: string) =>
  page.evaluate((i) => {
    const r = document.getElementById(i)!.getBoundingClientRect();
    return r.top >= -1 && r.top < innerHeight / 2;
  }, id);

describe('the lessons on the pages', () => {
  it('every section of every lesson is on its page, with its anchor, heading and test id', async () => {
    const w = await openPage(desktop, base, '?page=other-half');
    for (const l of Object.values(lessons)) {
      await w.page.goto(`${base}/?page=${l.page}`);
      await expect(w.page.locator('main h1').innerText()).resolves.toBe(l.title);
      for (const s of l.sections) {
        const extra = STATEFUL[l.page]?.[s.id];
        if (extra) await w.page.goto(`${base}/?page=${l.page}${extra}`);
        const sel = `[data-testid="lesson-${l.page}-${s.id}"]`;
        await w.page.waitForSelector(sel, { timeout: 10_000 });
        await expect(w.page.getAttribute(sel, 'id')).resolves.toBe(s.id);
        await expect(w.page.getAttribute(sel, 'data-kind')).resolves.toBe(s.kind);
        await expect(w.page.locator(`${sel} h2`).innerText()).resolves.toBe(s.title);
      }
    }
    // nothing of the source is inserted raw: no script or on* attribute inside any section
    await expect(w.page.locator('.lesson script, .lesson iframe, .lesson img').count()).resolves.toBe(0);
    expectNoErrors(w.errors);
    await w.page.close();
  });

  it('a URL’s #anchor: the section scrolled into view after rendering, and highlighted', async () => {
    const w = await openPage(desktop, base, '?page=layernorm&tab=variance#epsilon');
    await waitReady(w.page);
    await w.page.waitForFunction(() => document.getElementById('epsilon')?.classList.contains('flash'));
    expect(await inView(w.page, 'epsilon')).toBe(true);
    await screenshot(w.page, 'lesson-anchor');
    // a plain #anchor link (hashchange) does the same
    await w.page.evaluate(() => (location.hash = '#rmsnorm'));
    await w.page.waitForFunction(() => document.getElementById('rmsnorm')?.classList.contains('flash'));
    expect(await inView(w.page, 'rmsnorm')).toBe(true);
    // the nav drops the anchor: back on the page by the nav, its top is shown, nothing highlighted
    await w.page.click('[data-testid="nav-ffn"]');
    await w.page.click('[data-testid="nav-layernorm"]');
    await waitReady(w.page);
    await w.page.waitForTimeout(300);
    expect(new URL(w.page.url()).hash).toBe('');
    await expect(w.page.evaluate(() => [scrollY, document.querySelectorAll('.lesson.flash').length])).resolves.toEqual([0, 0]);
    expectNoErrors(w.errors);
    await w.page.close();
  });

  it('a lesson’s app link opens that state inside the app (no page load); the back button returns', async () => {
    const w = await openPage(desktop, base, '?page=other-half');
    await waitReady(w.page);
    await w.page.evaluate(() => ((window as unknown as { __marker: number }).__marker = 1));
    // the first link of the page's lesson to another page
    const link = w.page.locator('.lesson a[data-app-link]:not([href^="?page=other-half"])').first();
    const href = (await link.getAttribute('href'))!;
    const want = new URLSearchParams(href.split('#')[0]);
    await link.click();
    await w.page.waitForFunction((p) => new URLSearchParams(location.search).get('page') === p, want.get('page'));
    for (const [k, v] of want) expect(params(w.page).get(k), k).toBe(v);
    await w.page.waitForSelector('[data-testid="widget"]');
    await expect(w.page.evaluate(() => (window as unknown as { __marker?: number }).__marker)).resolves.toBe(1);
    await w.page.goBack();
    await w.page.waitForFunction(() => new URLSearchParams(location.search).get('page') === 'other-half');
    expectNoErrors(w.errors);
    await w.page.close();
  });

  it('on a phone: no lesson text under 11 px, display maths scrolls inside its box, nothing sideways', async () => {
    for (const l of Object.values(lessons)) {
      const w = await openPage(phone, base, `?page=${l.page}`);
      await w.page.waitForSelector('.lesson');
      const small = await w.page.evaluate(() => {
        const out: string[] = [];
        for (const el of document.querySelectorAll('.lesson *')) {
          if (el.closest('.katex-mathml') || el.classList.contains('vlist-s')) continue;
          const own = [...el.childNodes].some((n) => n.nodeType === 3 && (n.textContent ?? '').replace(/[\s\u200b]/g, '') !== '');
          if (own && parseFloat(getComputedStyle(el).fontSize) < 11) out.push(`${getComputedStyle(el).fontSize} ${(el.textContent ?? '').slice(0, 30)}`);
        }
        return out;
      });
      expect(small, l.page).toEqual([]);
      const maths = await w.page.$$eval('.lesson .katex-host.display', (els) => els.map((e) => ({ overflow: getComputedStyle(e).overflowX, right: e.getBoundingClientRect().right })));
      for (const m of maths) {
        expect(m.overflow).toBe('auto');
        expect(m.right).toBeLessThanOrEqual(PHONE.width);
      }
      expect(await horizontalOverflow(w.page), l.page).toBeLessThanOrEqual(0);
      expectNoErrors(w.errors);
      await w.page.close();
    }
  });
});
