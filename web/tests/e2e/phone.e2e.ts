// Every page on a phone (390 px wide): no text drawn smaller than 11 px — HTML text by its computed size, SVG
// text by its size as drawn (its font size times the SVG's scale on screen) — nothing wider than the screen
// unless it sits in a box that scrolls sideways (tables, formulas), and the page itself never scrolls sideways.
import { describe, expect, inject, it } from 'vitest';
import type { Page } from 'playwright-core';
import { openPage, screenshot, withBrowsers, type Browser } from './browser';
import { api, expectNoErrors, horizontalOverflow, waitReady } from './helpers';
import { PAGES } from '../../src/lib/pages';
import { runRequest } from '../../src/lib/runs';
import { defaults, type Schema } from '../../src/lib/state';

const base = inject('baseUrl');
const MIN_PX = 11;
let phone: Browser;
withBrowsers((_d, p) => (phone = p));

interface Small {
  text: string;
  px: number;
  where: string;
}

/** Every visible text node drawn smaller than `min` px: its text, its size as drawn, the element it is in. */
export async function smallText(page: Page, min = MIN_PX): Promise<Small[]> {
  return page.evaluate((min) => {
    const out: { text: string; px: number; where: string }[] = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const hiddenByClip = (el: Element): boolean => {
      for (let a: Element | null = el; a; a = a.parentElement) {
        const cs = getComputedStyle(a);
        if ((cs.clip && cs.clip !== 'auto') || (cs.clipPath && cs.clipPath !== 'none')) return true;
      }
      return false;
    };
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const text = n.textContent?.trim() ?? '';
      const el = n.parentElement;
      if (!text || !el) continue;
      if (el.closest('script, style, title, option, noscript, template')) continue;
      if (!el.checkVisibility({ visibilityProperty: true })) continue;
      const range = document.createRange();
      range.selectNodeContents(n);
      const box = range.getBoundingClientRect();
      if (box.width < 0.5 || box.height < 0.5) continue; // not drawn
      if (hiddenByClip(el)) continue; // read by screen readers only (.sr-only, KaTeX's MathML)
      let px = parseFloat(getComputedStyle(el).fontSize);
      if (el instanceof SVGGraphicsElement) {
        // an SVG's text is drawn at its font size in user units times the SVG's scale on screen (viewBox → px)
        const m = el.getScreenCTM();
        if (m) px *= Math.hypot(m.c, m.d);
      }
      if (px < min - 0.01) {
        const cls = el.getAttribute('class');
        out.push({ text: text.slice(0, 30), px: Math.round(px * 100) / 100, where: `${el.tagName.toLowerCase()}${cls ? '.' + cls.split(/\s+/).join('.') : ''}` });
      }
    }
    return out;
  }, min);
}

/**
 * Elements that stick out of the screen sideways without a box around them that scrolls (or clips) within the
 * screen: a table or a formula must fit, or scroll inside its own box.
 */
export async function overflowing(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const vw = document.documentElement.clientWidth;
    const out: string[] = [];
    // a box around it that scrolls or clips sideways and itself fits the screen
    const scrollsWithin = (el: Element): boolean => {
      for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
        const ox = getComputedStyle(a).overflowX;
        if (ox === 'auto' || ox === 'scroll' || ox === 'hidden' || ox === 'clip') {
          const r = a.getBoundingClientRect();
          if (r.left >= -0.5 && r.right <= vw + 0.5) return true;
        }
      }
      return false;
    };
    for (const el of document.querySelectorAll('body *')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      if (r.left >= -0.5 && r.right <= vw + 0.5) continue;
      if (el.closest('.sr-only, .katex-mathml, .skip-link')) continue; // not drawn (the skip link: until focused)
      if (scrollsWithin(el)) continue;
      const cls = el.getAttribute('class');
      out.push(`${el.tagName.toLowerCase()}${cls ? '.' + cls.split(/\s+/).join('.') : ''} [${Math.round(r.left)}, ${Math.round(r.right)}] > ${vw}`);
    }
    return out.slice(0, 20);
  });
}

describe('every page on a phone (390 px): legible text, nothing wider than the screen', () => {
  it('each page and its views', async () => {
    // a short finished run, so that the Train page draws its charts
    const v = { ...defaults(PAGES.train as Schema), steps: 20, dmodel: 16, a_layers: 2 };
    const run = await api<{ run_id: number }>(base, '/api/runs', runRequest(v, 'a'));
    const pages: [string, string][] = [
      ['course', ''],
      ['course', '&step=2'],
      ['course', '&placement=post&step=5'],
      ['other-half', ''],
      ['other-half', '&comp=layernorm'],
      ['other-half', '&comp=ffn'],
      ['ffn', ''],
      ['layernorm', ''],
      ['layernorm', '&tab=affine'],
      ['layernorm', '&norm=rmsnorm&tab=normalise'],
      ['gradflow', ''],
      ['addnorm', ''],
      ['train', `&steps=20&dmodel=16&a_layers=2&run_a=${run.run_id}`],
      ['cheatsheet', ''],
    ];
    const problems: string[] = [];
    for (const [p, extra] of pages) {
      const w = await openPage(phone, base, `?page=${p}${extra}`);
      if (p === 'train') await w.page.waitForSelector('[data-testid="loss-chart"] svg.plot path', { timeout: 60_000 });
      else if (p === 'cheatsheet') await w.page.waitForSelector('[data-testid="lesson-cheatsheet-memoization"]');
      else await waitReady(w.page);
      const name = `${p}${extra.replace(/&run_a=\d+/, '').replace(/[&=]/g, '-')}`;
      await screenshot(w.page, `phone-${name}`);
      // one line per kind of element and size: "ffn: 9 px in small ×128 (“0”, “1”, “2”)"
      const groups = new Map<string, string[]>();
      for (const s of await smallText(w.page)) {
        const k = `${s.px} px in ${s.where}`;
        groups.set(k, [...(groups.get(k) ?? []), s.text]);
      }
      for (const [k, texts] of groups) problems.push(`${name}: ${k} ×${texts.length} (${texts.slice(0, 3).map((t) => `“${t}”`).join(', ')})`);
      for (const o of await overflowing(w.page)) problems.push(`${name}: sticks out: ${o}`);
      const wide = await horizontalOverflow(w.page);
      if (wide > 0) problems.push(`${name}: the page scrolls sideways by ${wide} px`);
      expectNoErrors(w.errors);
      await w.page.close();
    }
    expect(problems, problems.join('\n')).toEqual([]);
  });
});
