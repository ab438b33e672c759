// The course (issue 14): the overview page that follows one token through a whole block step by step, in both
// placements, with the engine's numbers — each step's vectors equal the rows of the engine's own trace for that
// step (asked here apart from the page) — and the "next" links that walk the whole course in order.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Page } from 'playwright-core';
import { launch, openPage, screenshot, type Browser, type WatchedPage } from './browser';
import { api, choose, expectNoErrors, expectNum, expectText, params, waitReady } from './helpers';
import { fmt } from '../../src/lib/format';
import type { BlockResponse } from '../../src/lib/api';

const base = inject('baseUrl');
const TEXT = 'Four score and seven';
const LAST = 19;
let browser: Browser;
let w: WatchedPage;

/**
 * The trace activations each step's rows are, written out here apart from the page's lib/course.ts (docs/trace.md):
 * before, [the update an add adds,] after.
 */
const PRE: [string, string[]][] = [
  ['ln1', ['hook_resid_pre', 'ln1.hook_out']],
  ['attention', ['ln1.hook_out', 'hook_attn_out']],
  ['residual 1', ['hook_resid_pre', 'hook_attn_out', 'hook_resid_mid']],
  ['ln2', ['hook_resid_mid', 'ln2.hook_out']],
  ['ffn', ['ln2.hook_out', 'hook_mlp_out']],
  ['residual 2', ['hook_resid_mid', 'hook_mlp_out', 'hook_resid_post']],
];
const POST: [string, string[]][] = [
  ['attention', ['hook_resid_pre', 'hook_attn_out']],
  ['residual 1', ['hook_resid_pre', 'hook_attn_out', 'hook_sum1']],
  ['ln1', ['hook_sum1', 'hook_resid_mid']],
  ['ffn', ['hook_resid_mid', 'hook_mlp_out']],
  ['residual 2', ['hook_resid_mid', 'hook_mlp_out', 'hook_sum2']],
  ['ln2', ['hook_sum2', 'hook_resid_post']],
];

/** The engine's trace of block `block` for the sentence in one placement (its own request, not the page's). */
async function trace(placement: 'pre' | 'post', text = TEXT, block = 0): Promise<Record<string, (number | null)[][]>> {
  const b = await api<BlockResponse>(base, '/api/compute/block', { model: 'chars-small', text, overrides: { placement }, trace: [`blocks.${block}.`] });
  expect(b.config.placement).toBe(placement);
  return b.trace as Record<string, (number | null)[][]>;
}

/** The rows the page draws now: each row's id and its cells' raw values. */
async function drawn(page: Page): Promise<{ row: string; raw: string[] }[]> {
  return page.$$eval('[data-testid="course-vectors"] svg[data-row]', (svgs) =>
    svgs.map((s) => ({ row: s.getAttribute('data-row')!, raw: [...s.querySelectorAll('rect.vec-cell')].map((r) => r.getAttribute('data-raw')!) })),
  );
}
const chips = (page: Page) => page.$$eval('[data-testid="course-steps"] button', (bs) => bs.map((b) => b.getAttribute('data-step')));
const hypot = (v: (number | null)[]) => Math.sqrt(v.reduce<number>((s, x) => s + (x ?? 0) * (x ?? 0), 0));

/** Step `i` of `order` shows the trace's rows of token `pos`, and its notice says their lengths. */
async function expectStep(page: Page, order: [string, string[]][], i: number, t: Record<string, (number | null)[][]>, pos = LAST, block = 0) {
  const [id, names] = order[i];
  await page.waitForSelector(`[data-testid="course-step"][data-step="${id}"]`);
  expect(params(page).get('step') ?? '0').toBe(String(i));
  const want = names.map((n) => t[`blocks.${block}.${n}`][pos].map((v) => String(v)));
  const rows = await drawn(page);
  expect(rows.map((r) => r.row)).toEqual(names.length === 3 ? ['before', 'update', 'after'] : ['before', 'after']);
  rows.forEach((r, k) => expect(r.raw, `${id}: the ${r.row} row vs blocks.${block}.${names[k]}[${pos}]`).toEqual(want[k]));
  // the notice's lengths are those of the rows drawn (after attention and the FFN: ‖f‖, the update's)
  const nums = await page.$$eval('[data-testid="course-notice"] .num', (ns) => ns.map((n) => n.getAttribute('data-raw')));
  expect(nums).toContain(String(hypot(t[`blocks.${block}.${names[0]}`][pos])));
  expect(nums).toContain(String(hypot(t[`blocks.${block}.${names[names.length - 1]}`][pos])));
  if (id.startsWith('ln')) {
    const ln = id === 'ln1' ? 'ln1' : 'ln2';
    await expectNum(page, 'step-mean', t[`blocks.${block}.${ln}.hook_mean`][pos] as unknown as number);
    await expectNum(page, 'step-rstd', t[`blocks.${block}.${ln}.hook_rstd`][pos] as unknown as number);
  }
  await expect(page.locator('[data-testid="course-formula"] .katex').count()).resolves.toBe(1);
}

beforeAll(async () => {
  browser = await launch();
  w = await openPage(browser, base, '?page=course');
});
afterAll(async () => browser?.close());

describe('the course overview: one token through one block', () => {
  it('opens on the first step of the pre-LN block, the last token, the engine’s rows', async () => {
    await waitReady(w.page);
    expect(await chips(w.page)).toEqual(PRE.map(([id]) => id));
    await expectText(w.page, '[data-testid="step-title"]', 'Step 1 of 6: LayerNorm 1 (ln1, block 0, Pre-LN, token 19 “n”)');
    await expect(w.page.locator('[data-testid="model"] option').allTextContents()).resolves.toContain('chars-small');
    await expectStep(w.page, PRE, 0, await trace('pre'));
    await expect(w.page.locator('[data-testid="course-notice"]').innerText()).resolves.toMatch(/^What to notice: The norm rescales a copy: ‖·‖ went from \S+ to \S+ \(its mean μ = /);
    await screenshot(w.page, 'course-pre-ln1');
  });

  it('steps forward through all six steps and back, each with the engine’s numbers for that step', async () => {
    const t = await trace('pre');
    for (let i = 1; i < PRE.length; i++) {
      await w.page.click('[data-testid="step-next"]');
      await expectStep(w.page, PRE, i, t);
      if (PRE[i][0] === 'residual 1') {
        await expectNum(w.page, 'step-alpha', 1);
        const x = t['blocks.0.hook_resid_pre'][LAST];
        const out = t['blocks.0.hook_resid_mid'][LAST];
        const text = await w.page.locator('[data-testid="course-notice"]').innerText();
        expect(text).toBe(
          `What to notice: ‖·‖ went from ${fmt(hypot(x))} to ${fmt(hypot(out))} after the add: the update α·f (‖α·f‖ = ${fmt(hypot(t['blocks.0.hook_attn_out'][LAST]))}) is added, the input is kept: cos(input, output) = ${fmt(
            x.reduce<number>((s, v, k) => s + v! * out[k]!, 0) / (hypot(x) * hypot(out)),
          )}.`,
        );
        await screenshot(w.page, 'course-pre-add');
      }
    }
    await expect(w.page.locator('[data-testid="step-next"]').isDisabled()).resolves.toBe(true);
    await w.page.click('[data-testid="step-prev"]');
    await expectStep(w.page, PRE, 4, t);
    // a numbered step jumps straight to it
    await w.page.click('[data-testid="course-step-1"]');
    await expectStep(w.page, PRE, 1, t);
    expectNoErrors(w.errors);
  });

  it('the placement switch changes the order of the steps and keeps the step shown', async () => {
    await w.page.click('[data-testid="course-step-4"]'); // the FFN, 5th in pre-LN
    await choose(w.page, 'placement', 'post');
    await waitReady(w.page);
    await w.page.waitForFunction(() => document.querySelector('[data-testid="course-steps"] button')?.getAttribute('data-step') === 'attention');
    expect(await chips(w.page)).toEqual(POST.map(([id]) => id));
    expect(params(w.page).get('placement')).toBe('post');
    const t = await trace('post');
    await expectStep(w.page, POST, 3, t); // the FFN, 4th in post-LN
    await expect(w.page.locator('[data-testid="model-badge"]').innerText()).resolves.toContain('run in post placement (its weights were trained for pre)');
    for (const i of [0, 1, 2, 4, 5]) {
      await w.page.click(`[data-testid="course-step-${i}"]`);
      await expectStep(w.page, POST, i, t);
    }
    await expect(w.page.locator('[data-testid="course-notice"]').innerText()).resolves.toMatch(/^What to notice: The sum is normalised and becomes the stream/);
    await screenshot(w.page, 'course-post-ln2');
    await choose(w.page, 'placement', 'pre');
    await waitReady(w.page);
    await expectStep(w.page, PRE, 3, await trace('pre')); // ln2 again, 4th in pre-LN
    expectNoErrors(w.errors);
  });

  it('Play walks the steps by itself and stops at the last; a token picked is followed', async () => {
    await w.page.click('[data-testid="course-step-3"]');
    await w.page.click('[data-testid="step-play"]');
    await expect(w.page.getAttribute('[data-testid="step-play"]', 'aria-pressed')).resolves.toBe('true');
    await w.page.waitForFunction(() => new URLSearchParams(location.search).get('step') === '5', undefined, { timeout: 15_000 });
    await w.page.waitForFunction(() => document.querySelector('[data-testid="step-play"]')?.getAttribute('aria-pressed') === 'false', undefined, { timeout: 8_000 });
    await expect(w.page.locator('[data-testid="step-play"]').innerText()).resolves.toBe('Play again');
    expect(params(w.page).get('step')).toBe('5');
    // the first token, in block 1
    await w.page.click('[data-testid="token-0"]');
    await choose(w.page, 'block', '1');
    await waitReady(w.page);
    await expectText(w.page, '[data-testid="step-title"]', 'Step 6 of 6: Add (residual 2, block 1, Pre-LN, token 0 “F”)');
    await expectStep(w.page, PRE, 5, await trace('pre', TEXT, 1), 0, 1);
    // the first token can only listen to itself (the model is causal): its one attention weight is 1
    await w.page.click('[data-testid="course-step-1"]');
    await expect(w.page.locator('[data-testid="course-notice"]').innerText()).resolves.toContain('on token 0 “F”: 1.0.');
    expectNoErrors(w.errors);
  });

  it('an empty sentence asks for one; a refused character is said, with no numbers', async () => {
    const u = await openPage(browser, base, '?page=course&text=h%C3%A9llo');
    await u.page.waitForSelector('[data-testid="error"]');
    await expect(u.page.locator('[data-testid="course-vectors"]').count()).resolves.toBe(0);
    await u.page.fill('[data-testid="text-input"]', '');
    await u.page.waitForSelector('[data-testid="empty-text"]');
    await expect(u.page.locator('[data-testid="error"]').count()).resolves.toBe(0);
    expectNoErrors(u.errors, [/status of 400/]);
    await u.page.close();
  });
});

describe('the course path: a "next" link on every page, in order', () => {
  it('walks the whole course from the overview to the cheat sheet, and back one page', async () => {
    const u = await openPage(browser, base, '?page=course');
    const ORDER = ['course', 'other-half', 'ffn', 'layernorm', 'gradflow', 'addnorm', 'train', 'cheatsheet'];
    const seen: string[] = [];
    for (;;) {
      const page = params(u.page).get('page')!;
      seen.push(page);
      await expect(u.page.locator('[data-testid="course-nav"]').innerText()).resolves.toContain(`Course, page ${seen.length} of ${ORDER.length}`);
      const next = u.page.locator('[data-testid="course-nav-next"]');
      if ((await next.count()) === 0) break;
      const title = (await next.innerText()).replace(/^Next: /, '').replace(/ →$/, '');
      await next.click();
      await u.page.waitForFunction((p) => new URLSearchParams(location.search).get('page') !== p, page);
      await expect(u.page.locator('main h1').innerText()).resolves.toBe(title);
      expect(await u.page.evaluate(() => scrollY)).toBe(0);
      if (seen.length > ORDER.length) break;
    }
    expect(seen).toEqual(ORDER);
    await u.page.click('[data-testid="course-nav-prev"]');
    expect(params(u.page).get('page')).toBe('train');
    await u.page.goBack();
    expect(params(u.page).get('page')).toBe('cheatsheet');
    await u.page.click('[data-testid="course-nav-start"]');
    expect(params(u.page).get('page')).toBe('course');
    await waitReady(u.page);
    expectNoErrors(u.errors);
    await u.page.close();
  });
});
