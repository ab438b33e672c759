// Accounts and comments in the browser, against the real server: the header's sign-in panel (keyboard, refusals,
// a phone's width, a throttled sign-in's wait counted down), posting on a section and seeing it from a second
// browser by the poll, deleting, a teacher hiding a student's comment, others' deletes and hides showing live in
// a page that is not reloaded, the comment rate limit's wait, and a dozen XSS payloads from
// tests/server/xss_payloads.txt that must run nothing, fetch nothing from elsewhere and leave no dangerous element
// or attribute in the list. (Class-code registration, on a server of its own: registration.e2e.ts.)
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Page } from 'playwright-core';
import { launch, openPage, screenshot, type Browser } from './browser';
import { apiStatus, expectNoErrors, expectText, horizontalOverflow } from './helpers';

const base = inject('baseUrl');
const teacher = inject('teacher');
const here = path.dirname(fileURLToPath(import.meta.url));
let run = 0;
/** A fresh username per call (the store lives for the whole e2e run). */
const newName = (p: string) => `${p}${Date.now().toString(36).slice(-5)}${run++}`;
const PASSWORD = 'correct-horse-9';

let b1: Browser;
let b2: Browser;
beforeAll(async () => {
  b1 = await launch();
  b2 = await launch();
});
afterAll(async () => {
  await b1?.close();
  await b2?.close();
});

async function signOutIfSignedIn(page: Page) {
  if (await page.locator('[data-testid="account-signout"]').count()) {
    await page.click('[data-testid="account-signout"]');
    await page.waitForSelector('[data-testid="account-open"]');
  }
}

async function signIn(page: Page, name: string, password: string, register: boolean) {
  await signOutIfSignedIn(page);
  await page.click('[data-testid="account-open"]');
  await page.waitForSelector('[data-testid="account-panel"]');
  await page.click(register ? '[data-testid="account-mode-register"]' : '[data-testid="account-mode-signin"]');
  await page.fill('[data-testid="account-username"]', name);
  await page.fill('[data-testid="account-password"]', password);
  await page.click('[data-testid="account-submit"]');
  await expectText(page, '[data-testid="account-name"]', name);
}

/** Scrolls the page's comments panel into view (the poll runs only while it is visible) and waits for its list. */
async function toComments(page: Page) {
  await page.locator('[data-testid="comments"]').scrollIntoViewIfNeeded();
  await page.waitForSelector('[data-testid="comments"][data-status="ready"]');
}

async function post(page: Page, body: string) {
  const before = await page.locator('[data-testid="comment"]').count();
  await page.fill('[data-testid="comment-input"]', body);
  await page.click('[data-testid="comment-post"]');
  try {
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid="comment"]').length > n, before, { timeout: 10_000 });
  } catch {
    const err = await page.evaluate(() => document.querySelector('[data-testid="comment-post-error"]')?.textContent ?? null);
    const n = await page.locator('[data-testid="comment"]').count();
    throw new Error(`posting "${body}": the list has ${n} comments (had ${before}); the panel says: ${err}`);
  }
  await expectText(page, '[data-testid="comment-counter"]', '0 / 4000');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const bodies = (page: Page) => page.$$eval('[data-testid="comment-body"]', (els) => els.map((e) => e.textContent?.trim() ?? ''));

describe('sign-in panel', () => {
  it('opens from the keyboard, takes focus, says the server’s refusal, closes on Escape; fits a phone', async () => {
    const { page, errors } = await openPage(b1, base, '?page=gradflow');
    await page.waitForSelector('[data-testid="account-open"]');
    await page.focus('[data-testid="account-open"]');
    await page.keyboard.press('Enter');
    await page.waitForSelector('[data-testid="account-panel"]');
    expect(await page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).toBe('account-username');
    expect(await page.getAttribute('[data-testid="account-open"]', 'aria-expanded')).toBe('true');
    // labels name the fields
    expect(await page.getByLabel('Username').count()).toBe(1);
    expect(await page.getByLabel('Password').count()).toBe(1);
    await page.keyboard.type('nobody-here');
    await page.keyboard.press('Tab');
    await page.keyboard.type('wrong-password');
    await page.keyboard.press('Enter');
    await page.waitForSelector('[data-testid="account-error"]');
    expect(await page.textContent('[data-testid="account-error"]')).toMatch(/no such account, or a wrong password.*bad_credentials/);
    await page.keyboard.press('Escape');
    await page.waitForSelector('[data-testid="account-panel"]', { state: 'detached' });
    expect(await page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).toBe('account-open');

    // a taken name, on register: the server's 409 is shown
    await page.click('[data-testid="account-open"]');
    await page.click('[data-testid="account-mode-register"]');
    await page.fill('[data-testid="account-username"]', teacher.name);
    await page.fill('[data-testid="account-password"]', PASSWORD);
    await page.click('[data-testid="account-submit"]');
    await page.waitForSelector('[data-testid="account-error"]');
    expect(await page.textContent('[data-testid="account-error"]')).toMatch(/taken.*username_taken/);

    await page.setViewportSize({ width: 375, height: 740 });
    const box = await page.locator('[data-testid="account-panel"]').boundingBox();
    expect(box!.x).toBeGreaterThanOrEqual(0);
    expect(box!.x + box!.width).toBeLessThanOrEqual(375);
    expect(await horizontalOverflow(page)).toBeLessThanOrEqual(0);
    await screenshot(page, 'comments-signin-phone');
    await page.keyboard.press('Escape');
    expectNoErrors(errors, [/status of 401/, /status of 409/]);
    await page.close();
  });
});

describe('sign-in throttle', () => {
  it('a throttled sign-in says how long to wait, counts it down with the button disabled, then lets one in', async () => {
    // The server waits 2^(n−5) s after n ≥ 5 failures for one account from one address: 7 failures (spaced by
    // the waits) leave a 4 s wait for the browser to meet.
    const name = newName('tina');
    expect((await apiStatus(base, '/api/auth/register', { username: name, password: PASSWORD })).status).toBe(201);
    const fail = async () => (await apiStatus(base, '/api/auth/login', { username: name, password: 'not-the-password' })).status;
    for (let i = 0; i < 5; i++) expect(await fail()).toBe(401);
    expect(await fail()).toBe(429); // at once: throttled (not counted)
    await sleep(1_100);
    expect(await fail()).toBe(401);
    await sleep(2_100);
    expect(await fail()).toBe(401);

    const { page, errors } = await openPage(b1, base, '?page=gradflow');
    await page.setViewportSize({ width: 360, height: 740 });
    const logins: number[] = [];
    page.on('request', (r) => {
      if (r.url().endsWith('/api/auth/login')) logins.push(Date.now());
    });
    await page.click('[data-testid="account-open"]');
    await page.fill('[data-testid="account-username"]', name);
    await page.fill('[data-testid="account-password"]', PASSWORD); // the right one: still refused while throttled
    await page.press('[data-testid="account-password"]', 'Enter');
    await page.waitForSelector('[data-testid="account-wait"]');
    const said = (await page.textContent('[data-testid="account-wait"]'))!.trim();
    expect(said).toMatch(/^Too many tries — try again in [1-4] s\.$/);
    expect(await page.getAttribute('[data-testid="account-wait"]', 'role')).toBe('alert');
    expect(await page.isDisabled('[data-testid="account-submit"]')).toBe(true);
    expect(await page.locator('[data-testid="account-error"]').count()).toBe(0); // said once, as the wait
    const first = Number(/(\d+) s/.exec(said)![1]);
    // it counts down…
    await page.waitForFunction(
      (n) => {
        const m = /(\d+) s/.exec(document.querySelector('[data-testid="account-wait-left"]')?.textContent ?? '');
        return m !== null && Number(m[1]) < n;
      },
      first,
      { timeout: 3_000 },
    );
    // …and Enter meanwhile sends nothing
    await page.press('[data-testid="account-password"]', 'Enter');
    expect(logins.length).toBe(1);
    // the panel and the message fit a 360 px phone
    const box = (await page.locator('[data-testid="account-panel"]').boundingBox())!;
    expect(box.x).toBeGreaterThanOrEqual(0);
    expect(box.x + box.width).toBeLessThanOrEqual(360);
    expect(await horizontalOverflow(page)).toBeLessThanOrEqual(0);
    await screenshot(page, 'comments-signin-throttled-phone');
    // the time is up: the button is back, and the right password signs in
    await page.waitForSelector('[data-testid="account-wait-over"]', { timeout: 8_000 });
    expect(await page.textContent('[data-testid="account-wait-over"]')).toBe('You can try again now.');
    expect(await page.isDisabled('[data-testid="account-submit"]')).toBe(false);
    await page.press('[data-testid="account-password"]', 'Enter');
    await expectText(page, '[data-testid="account-name"]', name);
    expect(logins.length).toBe(2);
    await signOutIfSignedIn(page);
    expectNoErrors(errors, [/status of 429/]);
    await page.close();
  });
});

describe('comments', () => {
  it('register, post on a section, seen from a second browser by the poll, deleted', async () => {
    const alice = newName('alice');
    const a = await openPage(b1, base, '?page=ffn');
    const b = await openPage(b2, base, '?page=ffn');
    await signIn(a.page, alice, PASSWORD, true);
    expect(await a.page.textContent('[data-testid="account-role"]')).toBe('student');
    await toComments(a.page);
    await toComments(b.page);
    expect(await b.page.textContent('[data-testid="comments-signin"]')).toMatch(/Sign in \(top-right\) to leave a comment/);
    expect(await b.page.locator('[data-testid="comment-form"]').count()).toBe(0);
    const count0 = Number(await b.page.textContent('[data-testid="comments-count"]'));

    const text = `Position-wise means the same weights at every token ${alice}`;
    await a.page.fill('[data-testid="comment-input"]', text + ' **really**');
    expect(await a.page.textContent('[data-testid="comment-counter"]')).toBe(`${text.length + 11} / 4000`);
    await post(a.page, text + ' **really**');
    const mineSel = `[data-testid="comment"]:has-text("${alice}")`;
    expect(await a.page.locator(`${mineSel} strong`).last().textContent()).toBe('really'); // the server's rendering
    expect(await a.page.locator(`${mineSel} [data-testid="comment-delete"]`).count()).toBe(1);

    // the second browser (signed out) sees it within the 5 s poll, without reloading
    await b.page.waitForSelector(mineSel, { timeout: 9_000 });
    await expectText(b.page, '[data-testid="comments-count"]', String(count0 + 1));
    expect(await b.page.locator(`${mineSel} [data-testid="comment-delete"]`).count()).toBe(0);
    expect(await b.page.textContent(`${mineSel} [data-testid="comment-author"]`)).toBe(alice);
    await screenshot(a.page, 'comments-posted');

    await a.page.click(`${mineSel} [data-testid="comment-delete"]`);
    await a.page.waitForSelector(mineSel, { state: 'detached' });
    await b.page.reload();
    await toComments(b.page);
    expect(await b.page.locator(mineSel).count()).toBe(0);
    await signOutIfSignedIn(a.page);
    expect(await a.page.locator('[data-testid="comment-form"]').count()).toBe(0);
    expectNoErrors(a.errors);
    expectNoErrors(b.errors);
    await a.page.close();
    await b.page.close();
  });

  it('a teacher hides a student’s comment: marked hidden for the teacher, gone for the student', async () => {
    const bob = newName('bob');
    const s = await openPage(b1, base, '?page=layernorm');
    await signIn(s.page, bob, PASSWORD, true);
    await toComments(s.page);
    await post(s.page, `A question from ${bob}: why ε?`);
    const sel = `[data-testid="comment"]:has-text("${bob}")`;

    const t = await openPage(b2, base, '?page=layernorm');
    await signIn(t.page, teacher.name, teacher.password, false);
    expect(await t.page.textContent('[data-testid="account-role"]')).toBe('teacher');
    await toComments(t.page);
    await t.page.waitForSelector(sel);
    // a teacher may act on any comment
    expect(await t.page.locator(`${sel} [data-testid="comment-delete"]`).count()).toBe(1);
    await t.page.click(`${sel} [data-testid="comment-hide"]`);
    await t.page.waitForSelector(`${sel}[data-hidden="true"] [data-testid="comment-hidden"]`);
    await t.page.reload();
    await toComments(t.page);
    await t.page.waitForSelector(`${sel}[data-hidden="true"] [data-testid="comment-unhide"]`); // still listed for the teacher
    await screenshot(t.page, 'comments-teacher-hidden');

    await s.page.reload();
    await toComments(s.page);
    expect(await s.page.locator(sel).count()).toBe(0);
    // unhidden, it comes back for the student
    await t.page.click(`${sel} [data-testid="comment-unhide"]`);
    await t.page.waitForSelector(`${sel}[data-hidden="false"]`);
    await s.page.reload();
    await toComments(s.page);
    await s.page.waitForSelector(sel);
    await signOutIfSignedIn(t.page);
    await signOutIfSignedIn(s.page);
    expectNoErrors(s.errors);
    expectNoErrors(t.errors);
    await s.page.close();
    await t.page.close();
  });

  it('signed in, the Train page’s POST /api/runs and DELETE /api/runs/{id} carry X-CSRF-Token (no 403 csrf)', async () => {
    const { page, errors } = await openPage(b1, base, '?page=train&steps=400&dmodel=16');
    await signIn(page, newName('tess'), PASSWORD, true);
    const changes: { method: string; url: string; csrf: string | null }[] = [];
    page.on('request', (r) => {
      if (r.method() !== 'GET' && r.url().includes('/api/runs')) changes.push({ method: r.method(), url: new URL(r.url()).pathname, csrf: r.headers()['x-csrf-token'] ?? null });
    });
    await page.click('[data-testid="train-both"]');
    await page.waitForFunction(() => /run_b=\d+/.test(location.search), null, { timeout: 20_000 });
    await page.waitForSelector('[data-testid="cancel-a"]:not([disabled])', { timeout: 20_000 });
    await page.click('[data-testid="cancel-a"]');
    await page.waitForFunction(() => ['cancelled', 'finished'].includes(document.querySelector('[data-testid="state-a"]')?.textContent ?? ''), null, { timeout: 30_000 });
    expect(await page.locator('[data-testid="error"]').count()).toBe(0);
    expect(changes.map((c) => c.method)).toEqual(['POST', 'POST', 'DELETE']);
    expect(changes.every((c) => c.csrf !== null && c.csrf.length > 10)).toBe(true);
    if (await page.locator('[data-testid="cancel-b"]:not([disabled])').count()) await page.click('[data-testid="cancel-b"]');
    await signOutIfSignedIn(page);
    expectNoErrors(errors);
    await page.close();
  });

  it('live: another student’s delete and a teacher’s hide, unhide and delete go from a page that is not reloaded', async () => {
    const carol = newName('carol');
    const dave = newName('dave');
    const a = await openPage(b1, base, '?page=addnorm');
    const b = await openPage(b2, base, '?page=addnorm');
    await signIn(a.page, carol, PASSWORD, true);
    await signIn(b.page, dave, PASSWORD, true);
    await toComments(a.page);
    await toComments(b.page);
    await post(b.page, `First, from ${dave}: does placement matter at 2 layers?`);
    await post(b.page, `Second, from ${dave}: and at 12?`);
    const d1 = `[data-testid="comment"]:has-text("First, from ${dave}")`;
    const d2 = `[data-testid="comment"]:has-text("Second, from ${dave}")`;
    await a.page.waitForSelector(d2, { timeout: 9_000 }); // the poll brings them
    await a.page.waitForSelector(d1);

    // A is in the middle of writing: the text and the focus must survive what the others do
    const draft = 'Half a thought about Pre-LN, not posted yet';
    await a.page.click('[data-testid="comment-input"]');
    await a.page.keyboard.type(draft);
    // A's requests to the comments endpoint: never two at once
    let open = 0;
    let most = 0;
    const asked: string[] = [];
    const isList = (u: string) => new URL(u).pathname === '/api/comments';
    a.page.on('request', (r) => {
      if (r.method() === 'GET' && isList(r.url())) {
        asked.push(r.url());
        most = Math.max(most, ++open);
      }
    });
    const done = (r: { method(): string; url(): string }) => {
      if (r.method() === 'GET' && isList(r.url())) open--;
    };
    a.page.on('requestfinished', done);
    a.page.on('requestfailed', done);
    const t0 = Date.now();
    // where the textarea being typed in is on screen (the removed comments are above it)
    const inputTop = () => a.page.evaluate(() => document.querySelector('[data-testid="comment-input"]')!.getBoundingClientRect().top);
    const top0 = await inputTop();

    // B (the author) deletes their first comment: gone from A within a poll, without a reload
    await b.page.click(`${d1} [data-testid="comment-delete"]`);
    await b.page.waitForSelector(d1, { state: 'detached' });
    await a.page.waitForSelector(d1, { state: 'detached', timeout: 9_000 });
    expect(await a.page.locator(d2).count()).toBe(1);
    expect(await a.page.inputValue('[data-testid="comment-input"]')).toBe(draft);
    expect(await a.page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).toBe('comment-input');
    expect(Math.abs((await inputTop()) - top0)).toBeLessThanOrEqual(1); // it did not move on screen
    expect(await a.page.textContent('[data-testid="comments-notice"]')).toBe('A comment removed.');

    // the teacher (in B) hides the second: gone for A, still listed (marked) for the teacher
    await signIn(b.page, teacher.name, teacher.password, false);
    await toComments(b.page);
    await b.page.click(`${d2} [data-testid="comment-hide"]`);
    await b.page.waitForSelector(`${d2}[data-hidden="true"]`);
    await a.page.waitForSelector(d2, { state: 'detached', timeout: 9_000 });
    // unhidden: back for A
    await b.page.click(`${d2} [data-testid="comment-unhide"]`);
    await a.page.waitForSelector(d2, { timeout: 9_000 });
    expect(await a.page.getAttribute(d2, 'data-hidden')).toBe('false');
    // the teacher deletes it: gone for A
    await b.page.click(`${d2} [data-testid="comment-delete"]`);
    await a.page.waitForSelector(d2, { state: 'detached', timeout: 9_000 });
    expect(await a.page.inputValue('[data-testid="comment-input"]')).toBe(draft);
    expect(await a.page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).toBe('comment-input');
    expect(Math.abs((await inputTop()) - top0)).toBeLessThanOrEqual(1);
    await screenshot(a.page, 'comments-live-removed');

    // cheap: one request at a time, and at most a poll plus a resync per 5 s
    const seconds = (Date.now() - t0) / 1000;
    expect(most).toBe(1);
    expect(asked.length).toBeLessThanOrEqual(2 * Math.ceil(seconds / 5) + 2);
    expect(asked.some((u) => new URL(u).searchParams.get('limit') === '100')).toBe(true); // the resyncs happened
    await signOutIfSignedIn(a.page);
    await signOutIfSignedIn(b.page);
    expectNoErrors(a.errors);
    expectNoErrors(b.errors);
    await a.page.close();
    await b.page.close();
  });

  it('the comment rate limit: the wait (Retry-After) said and counted down, Post disabled until it is over', async () => {
    // Its own browser, with Playwright's clock (which runs in real time until told to jump) to see the end of the
    // server's 60 s without waiting for it.
    const b3 = await launch();
    try {
      await b3.context.clock.install();
      const { page, errors } = await openPage(b3, base, '?page=gradflow');
      await signIn(page, newName('rita'), PASSWORD, true);
      await toComments(page);
      for (let i = 1; i <= 6; i++) await post(page, `Depth note ${i}`);
      await page.fill('[data-testid="comment-input"]', 'Depth note 7, one too many');
      await page.click('[data-testid="comment-post"]');
      await page.waitForSelector('[data-testid="comment-post-wait"]');
      const said = (await page.textContent('[data-testid="comment-post-error"]'))!.trim();
      expect(said).toMatch(/^Too many comments — try again in (60|59) s\. \(comments: expected at most 6 a minute from one account\)$/);
      expect(await page.isDisabled('[data-testid="comment-post"]')).toBe(true);
      expect(await page.inputValue('[data-testid="comment-input"]')).toBe('Depth note 7, one too many'); // kept for later
      await page.waitForFunction(() => Number(/\d+/.exec(document.querySelector('[data-testid="comment-post-wait"]')?.textContent ?? '')?.[0]) <= 58, null, { timeout: 4_000 });
      expect(await page.isDisabled('[data-testid="comment-post"]')).toBe(true);
      await page.clock.fastForward('01:00');
      await page.waitForSelector('[data-testid="comment-post-error"]', { state: 'detached', timeout: 5_000 });
      expect(await page.isDisabled('[data-testid="comment-post"]')).toBe(false);
      await signOutIfSignedIn(page);
      expectNoErrors(errors, [/status of 429/]);
      await page.close();
    } finally {
      await b3.close();
    }
  });

  it('XSS: a dozen payloads run nothing, fetch nothing foreign, and leave no script, img, svg, iframe or on* attribute', async () => {
    // One payload a line; '#' lines are comments; lines with escapes (\xHH, \n, …) are left to the server tests.
    const all = readFileSync(path.join(here, '../../../tests/server/xss_payloads.txt'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('#') && !l.includes('\\'));
    const payloads = Array.from({ length: 12 }, (_, i) => all[Math.floor((i * all.length) / 12)]);
    expect(new Set(payloads).size).toBe(12);

    const { page, errors } = await openPage(b1, base, '?page=train');
    const dialogs: string[] = [];
    const foreign: string[] = [];
    const origin = new URL(base).origin;
    page.on('dialog', (d) => {
      dialogs.push(`${d.type()}: ${d.message()}`);
      void d.dismiss();
    });
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (u.protocol !== 'data:' && u.origin !== origin) foreign.push(r.url());
    });
    // The server allows 6 comments a minute per account: two accounts post six each.
    for (let k = 0; k < 2; k++) {
      await signIn(page, newName('mallory'), PASSWORD, true);
      await toComments(page);
      for (const p of payloads.slice(k * 6, k * 6 + 6)) await post(page, p);
    }
    await page.reload();
    await toComments(page);
    await page.waitForTimeout(500);
    const shown = await bodies(page);
    expect(shown.length).toBeGreaterThanOrEqual(12);
    const bad = await page.evaluate(() => {
      const list = document.querySelector('[data-testid="comment-list"]')!;
      const out: string[] = [];
      for (const el of list.querySelectorAll('script, img, svg, iframe, object, embed, form, input, link, meta, base, style, video, audio, details, body'))
        out.push(`<${el.tagName.toLowerCase()}>`);
      for (const el of list.querySelectorAll('*'))
        for (const a of el.attributes) {
          if (a.name.startsWith('on')) out.push(`${el.tagName.toLowerCase()}[${a.name}]`);
          if ((a.name === 'href' || a.name === 'src') && !/^https?:/i.test(a.value)) out.push(`${el.tagName.toLowerCase()}[${a.name}=${a.value}]`);
        }
      return out;
    });
    expect(bad).toEqual([]);
    expect(dialogs).toEqual([]);
    expect(foreign).toEqual([]);
    await screenshot(page, 'comments-xss');
    await signOutIfSignedIn(page);
    expectNoErrors(errors);
    await page.close();
  });
});
