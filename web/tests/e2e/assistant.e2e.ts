// The learning assistant's panel ("Ask about this page") against the real server: a streamed answer with the
// engine's numbers and a citation that opens the cited state and section, a suggested question, an out-of-scope
// question answered "I don't know" with the nearest sections, the keyboard alone, a phone's width, a signed-in
// learner's history across a reload and its clearing, and a hostile question shown as text.
import { describe, expect, inject, it } from 'vitest';
import type { Page } from 'playwright-core';
import { openPage, PHONE, screenshot, type Browser, withBrowsers } from './browser';
import { blocklabBinary, scratch, startServer } from './server';
import { expectNoErrors, expectText, horizontalOverflow, params, waitReady } from './helpers';
import { fmt } from '../../src/lib/format';
import { flatValues, type AssistantAnswer } from '../../src/lib/assistant';

const base = inject('baseUrl');
const QUESTION = 'LayerNorm of [0.1, 2.3, -1.2]?';
const PASSWORD = 'correct-horse-9';
let run = 0;
const newName = (p: string) => `${p}${Date.now().toString(36).slice(-5)}${run++}`;

let desktop: Browser;
let phone: Browser;
withBrowsers(
  (d, p) => ((desktop = d), (phone = p)),
  (b) => b.context.addInitScript(RECORDER),
);

interface Asked {
  /** the request's headers and body */
  accept: string | null;
  body: { question: string; page: string; context: Record<string, unknown> };
  contentType: string;
  /** the event names in the stream, in order */
  events: string[];
  /** the `done` event's data (or the JSON answer) */
  answer: AssistantAnswer;
}

// Every POST /api/assistant the app makes, with the whole answer as the app received it (a tee of the response,
// read in the page, so that its text is decoded as the app decodes it).
const RECORDER = `(() => {
  const orig = window.fetch;
  window.__assistant = [];
  window.fetch = async (input, init) => {
    const res = await orig(input, init);
    const url = typeof input === 'string' ? input : input.url;
    if (/\\/api\\/assistant$/.test(url) && (init && init.method) === 'POST') {
      const h = new Headers(init.headers);
      const entry = { accept: h.get('Accept'), csrf: h.get('X-CSRF-Token'), body: init.body, status: res.status, contentType: res.headers.get('Content-Type') || '', text: null };
      window.__assistant.push(entry);
      res.clone().text().then((t) => (entry.text = t), (e) => (entry.text = 'READ FAILED ' + e));
    }
    return res;
  };
})();`;

interface Asked {
  accept: string | null;
  csrf: string | null;
  body: { question: string; page: string; context: Record<string, unknown> };
  contentType: string;
  /** the event names in the stream, in order */
  events: string[];
  /** the `done` event's data (or the JSON answer) */
  answer: AssistantAnswer;
}

/** The answer to the next POST /api/assistant (the n-th the page makes), once the whole of it has arrived. */
async function nextAnswer(page: Page): Promise<Asked> {
  const n = await page.evaluate(() => (window as unknown as { __assistant: unknown[] }).__assistant.length);
  const handle = await page.waitForFunction(
    (k) => {
      const e = (window as unknown as { __assistant: { text: string | null }[] }).__assistant[k];
      return e && e.text !== null ? e : null;
    },
    n,
    { timeout: 30_000, polling: 50 },
  );
  const e = (await handle.jsonValue()) as { accept: string | null; csrf: string | null; body: string; status: number; contentType: string; text: string };
  const events: string[] = [];
  let answer: AssistantAnswer | null = null;
  if (e.contentType.startsWith('text/event-stream')) {
    for (const block of e.text.split(/\r?\n\r?\n/)) {
      const ev = /^event: ?(.*)$/m.exec(block)?.[1];
      const data = [...block.matchAll(/^data: ?(.*)$/gm)].map((m) => m[1]).join('\n');
      if (!ev) continue;
      events.push(ev);
      if (ev === 'done') answer = JSON.parse(data);
    }
  } else if (e.status === 200) answer = JSON.parse(e.text);
  if (!answer) throw new Error(`POST /api/assistant ${e.status}: no answer in ${e.text.slice(0, 300)}`);
  return { accept: e.accept, csrf: e.csrf, body: JSON.parse(e.body), contentType: e.contentType, events, answer };
}

async function openPanel(page: Page) {
  await page.click('[data-testid="assistant-open"]');
  await page.waitForSelector('[data-testid="assistant-panel"]');
  await page.waitForFunction(() => document.activeElement?.getAttribute('data-testid') === 'assistant-input');
}

/** Types a question into the panel and sends it with Enter; resolves with what the server answered once the panel shows it. */
async function ask(page: Page, question: string): Promise<Asked> {
  const n = await page.locator('[data-testid="assistant-reply"]').count();
  const got = nextAnswer(page);
  await page.fill('[data-testid="assistant-input"]', question);
  await page.press('[data-testid="assistant-input"]', 'Enter');
  const asked = await got;
  await waitAnswered(page, n + 1);
  return asked;
}

/** Waits until the panel has `n` replies, the last one finished. */
async function waitAnswered(page: Page, n: number) {
  try {
    await page.waitForFunction(
      (k) => {
        const r = document.querySelectorAll('[data-testid="assistant-reply"]');
        return r.length === k && ['answered', 'unknown'].includes(r[k - 1].getAttribute('data-status') ?? '');
      },
      n,
      { timeout: 30_000 },
    );
  } catch {
    const err = await page.evaluate(() => document.querySelector('[data-testid="assistant-error"]')?.textContent ?? null);
    throw new Error(`no finished answer number ${n}; the panel says: ${err}`);
  }
}

const lastReply = (page: Page) => page.locator('[data-testid="assistant-reply"]').last();

/** The text (from the page) of the last answer, and its computed numbers as shown [what, text, raw]. */
async function shownAnswer(page: Page) {
  return lastReply(page).evaluate((li) => ({
    text: li.querySelector('[data-testid="assistant-answer"]')?.textContent ?? '',
    computed: [...li.querySelectorAll('[data-testid="assistant-computed"] li')].map((c) => [
      c.getAttribute('data-what'),
      [...c.querySelectorAll('.num')].map((num) => num.childNodes[0]?.textContent ?? ''),
      [...c.querySelectorAll('.num')].map((num) => num.getAttribute('data-raw')),
    ]),
    citations: [...li.querySelectorAll('[data-testid="assistant-citation"]')].map((a) => [a.getAttribute('data-section'), a.getAttribute('href')]),
    source: li.querySelector('[data-testid="assistant-source"]')?.textContent?.trim() ?? '',
  }));
}

/** Text in `selector` drawn smaller than `px` (KaTeX's invisible struts and its MathML copy left out). */
function smallText(page: Page, selector: string, px = 11): Promise<string[]> {
  return page.evaluate(
    ([sel, min]) => {
      const out: string[] = [];
      for (const root of document.querySelectorAll(sel as string))
        for (const el of root.querySelectorAll('*')) {
          if (el.closest('.katex-mathml') || el.classList.contains('vlist-s') || el.closest('.sr-only')) continue;
          const own = [...el.childNodes].some((n) => n.nodeType === 3 && (n.textContent ?? '').replace(/[\s\u200b]/g, '') !== '');
          if (!own || (el as HTMLElement).offsetParent === null) continue;
          const size = parseFloat(getComputedStyle(el).fontSize);
          if (size < (min as number)) out.push(`${size}px: ${el.tagName.toLowerCase()}.${el.className} “${(el.textContent ?? '').trim().slice(0, 30)}”`);
        }
      return out;
    },
    [selector, px] as const,
  );
}

describe('the assistant panel', () => {
  it('answers a LayerNorm question, streamed, with the engine’s numbers; its citation opens that vector and section', async () => {
    const w = await openPage(desktop, base, '?page=layernorm');
    await waitReady(w.page);
    await openPanel(w.page);
    const a = await ask(w.page, QUESTION);
    // asked as an event stream, with the page's state as context
    expect(a.accept).toBe('text/event-stream');
    expect(a.body).toMatchObject({ question: QUESTION, page: 'layernorm' });
    // the page's default tokens: the seed's two, then two of the page's own
    expect(a.body.context).toMatchObject({ tab: 'mean', x: [[0.1, 2.3, -1.2], [5, 5.1, 4.9], [-0.5, 0.7, 1.9], [3, -2, 0.5]] });
    expect(a.contentType).toMatch(/^text\/event-stream/);
    expect(a.events.filter((e) => e === 'token').length, `events: ${a.events.join(' ')}`).toBeGreaterThan(0);
    expect(a.events.at(-1)).toBe('done');
    expect(a.answer.status).toBe('answered');
    // the panel shows the done event's answer and numbers, each as fmt(value) with the raw value kept
    const shown = await shownAnswer(w.page);
    expect(shown.computed).toEqual(
      a.answer.computed.map((c) => [c.what, flatValues(c.value).map((v) => fmt(v)), flatValues(c.value).map((v) => (v === null ? 'null' : String(v)))]),
    );
    const texts = shown.computed.flatMap((c) => c[1]);
    expect(texts).toContain('0.4');
    expect(texts).toContain('1.4445');
    expect(shown.source).toContain(a.answer.source === 'lessons' ? 'from the lessons' : `from ${a.answer.source}`);
    // a computed number's formula on keyboard focus
    const num = lastReply(w.page).locator('[data-testid="assistant-computed-value"]').first();
    await num.focus();
    await expect(num.locator('.tip').isVisible()).resolves.toBe(true);
    await expect(num.locator('.tip').innerText()).resolves.toContain(a.answer.computed[0].formula);
    await screenshot(w.page, 'assistant-answer');

    // the citation of the step-by-step section: the LayerNorm page with that one vector, the section in view
    const cite = a.answer.citations.find((c) => c.section === 'layernorm#step-by-step');
    expect(cite, `citations: ${JSON.stringify(a.answer.citations)}`).toBeDefined();
    await lastReply(w.page).locator(`[data-testid="assistant-citation"][data-section="layernorm#step-by-step"]`).click();
    await w.page.waitForFunction(() => location.hash === '#step-by-step');
    expect(params(w.page).get('page')).toBe('layernorm');
    expect(params(w.page).get('x')).toBe('0.1,2.3,-1.2');
    await waitReady(w.page);
    expect(await w.page.inputValue('[data-testid="cell-0-0"]')).toBe('0.1');
    expect(await w.page.inputValue('[data-testid="cell-0-2"]')).toBe('-1.2');
    await expect(w.page.locator('[data-testid="cell-1-0"]').count()).resolves.toBe(0);
    const box = await w.page.evaluate(() => {
      const r = document.getElementById('step-by-step')!.getBoundingClientRect();
      return { top: r.top, bottom: r.bottom, height: innerHeight, flash: document.getElementById('step-by-step')!.classList.contains('flash') };
    });
    expect(box.top, JSON.stringify(box)).toBeGreaterThanOrEqual(-1);
    expect(box.top, JSON.stringify(box)).toBeLessThan(box.height / 2);
    expect(box.flash).toBe(true);
    await screenshot(w.page, 'assistant-citation');
    expectNoErrors(w.errors);
    await w.page.close();
  });

  it('a suggested question is asked with one click', async () => {
    const w = await openPage(desktop, base, '?page=layernorm');
    await openPanel(w.page);
    const buttons = w.page.locator('[data-testid="assistant-suggestion"]');
    expect(await buttons.count(), 'lessons/layernorm.md has no suggest: lines').toBeGreaterThan(0);
    const q = (await buttons.first().innerText()).trim();
    const n = await w.page.locator('[data-testid="assistant-reply"]').count();
    const got = nextAnswer(w.page);
    await buttons.first().click();
    const a = await got;
    await waitAnswered(w.page, n + 1);
    expect(a.body.question).toBe(q);
    await expect(w.page.locator('[data-testid="assistant-question"] .turn-text').last().innerText()).resolves.toBe(q);
    expect((await shownAnswer(w.page)).text.length).toBeGreaterThan(0);
    expectNoErrors(w.errors);
    await w.page.close();
  });

  it('an out-of-scope question: “I don’t know”, styled so, with the nearest sections', async () => {
    const w = await openPage(desktop, base, '?page=ffn');
    await openPanel(w.page);
    const a = await ask(w.page, 'who won the world cup in 2010?');
    expect(a.answer.status).toBe('unknown');
    const reply = lastReply(w.page);
    await expect(reply.getAttribute('data-status')).resolves.toBe('unknown');
    await expect(reply.getAttribute('class')).resolves.toContain('unknown');
    await expect(reply.locator('[data-testid="assistant-unknown"]').isVisible()).resolves.toBe(true);
    const shown = await shownAnswer(w.page);
    expect(shown.citations.length).toBeGreaterThan(0);
    expect(shown.citations.map((c) => c[0])).toEqual(a.answer.citations.map((c) => c.section));
    await expect(reply.locator('[data-testid="assistant-citations"] .hint').innerText()).resolves.toMatch(/nearest sections/);
    await screenshot(w.page, 'assistant-unknown');
    expectNoErrors(w.errors);
    await w.page.close();
  });

  it('the page’s sentence as context: “héllo” refused as it was typed (context.text[1], got “é”), a position past its end read as its last token', async () => {
    const q = 'What does the FFN do to this token?';
    const w = await openPage(desktop, base, `?page=ffn&text=${encodeURIComponent('héllo')}`);
    await openPanel(w.page);
    await w.page.fill('[data-testid="assistant-input"]', q);
    await w.page.press('[data-testid="assistant-input"]', 'Enter');
    await w.page.waitForSelector('[data-testid="assistant-error"]', { timeout: 30_000 });
    const msg = (await w.page.locator('[data-testid="assistant-error"]').innerText()).trim();
    expect(msg).toContain('context.text[1]: expected a character of the model\'s alphabet, got "é"');
    expect(msg).not.toContain('\uFFFD');
    // the question is handed back, nothing left in the transcript
    expect(await w.page.inputValue('[data-testid="assistant-input"]')).toBe(q);
    await screenshot(w.page, 'assistant-refused-sentence');
    expectNoErrors(w.errors, [/status of 400/]);
    await w.page.close();
    // a shared URL's position past the sentence's end: the page tracks the last token, and so does the answer
    const u = await openPage(desktop, base, '?page=ffn&text=abc&pos=10');
    await waitReady(u.page);
    await expectText(u.page, '[data-testid="tracked"]', '2');
    await openPanel(u.page);
    const a = await ask(u.page, q);
    expect(a.body.context.pos).toBe(10);
    expect(a.answer.status).toBe('answered');
    await expect(u.page.locator('[data-testid="assistant-error"]').count()).resolves.toBe(0);
    expectNoErrors(u.errors);
    await u.page.close();
  });

  it('works from the keyboard alone: Tab to the button, Enter opens, Enter sends, Shift+Enter a new line, Escape closes', async () => {
    const w = await openPage(desktop, base, '?page=gradflow');
    await waitReady(w.page);
    let at: string | null = null;
    for (let i = 0; i < 30 && at !== 'assistant-open'; i++) {
      await w.page.keyboard.press('Tab');
      at = await w.page.evaluate(() => document.activeElement?.getAttribute('data-testid') ?? null);
    }
    expect(at).toBe('assistant-open');
    await w.page.keyboard.press('Enter');
    await w.page.waitForSelector('[data-testid="assistant-panel"]');
    await expect(w.page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).resolves.toBe('assistant-input');
    await expect(w.page.getAttribute('[data-testid="assistant-open"]', 'aria-expanded')).resolves.toBe('true');
    await w.page.keyboard.type('Why do residuals help');
    await w.page.keyboard.press('Shift+Enter');
    await w.page.keyboard.type('the gradient?');
    expect(await w.page.inputValue('[data-testid="assistant-input"]')).toBe('Why do residuals help\nthe gradient?');
    await expectText(w.page, '[data-testid="assistant-counter"]', '35 / 2000');
    const got = nextAnswer(w.page);
    await w.page.keyboard.press('Enter');
    const a = await got;
    await waitAnswered(w.page, 1);
    expect(a.body.question).toBe('Why do residuals help\nthe gradient?');
    expect(a.body.page).toBe('gradflow');
    expect(await w.page.inputValue('[data-testid="assistant-input"]')).toBe('');
    // Escape closes and gives focus back to the button
    await w.page.keyboard.press('Escape');
    await expect(w.page.locator('[data-testid="assistant-panel"]').count()).resolves.toBe(0);
    await expect(w.page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).resolves.toBe('assistant-open');
    await expect(w.page.getAttribute('[data-testid="assistant-open"]', 'aria-expanded')).resolves.toBe('false');
    // the tab keeps the transcript (signed out): opening again shows it
    await w.page.keyboard.press('Enter');
    await w.page.waitForSelector('[data-testid="assistant-panel"]');
    await expect(w.page.locator('[data-testid="assistant-reply"]').count()).resolves.toBe(1);
    expectNoErrors(w.errors);
    await w.page.close();
  });

  it('fits a phone: a full-width sheet, no sideways scrolling, no text under 11 px', async () => {
    const w = await openPage(phone, base, '?page=layernorm');
    await waitReady(w.page);
    expect(await smallText(w.page, '.lesson')).toEqual([]);
    await openPanel(w.page);
    await ask(w.page, QUESTION);
    const box = (await w.page.locator('[data-testid="assistant-panel"]').boundingBox())!;
    expect(box.x).toBeGreaterThanOrEqual(0);
    expect(box.x + box.width).toBeLessThanOrEqual(PHONE.width + 0.5);
    expect(box.width).toBeGreaterThan(PHONE.width - 2);
    expect(box.y + box.height).toBeLessThanOrEqual(PHONE.height + 0.5);
    expect(await horizontalOverflow(w.page)).toBeLessThanOrEqual(0);
    const panelOverflow = await w.page.$eval('[data-testid="assistant-scroll"]', (el) => el.scrollWidth - el.clientWidth);
    expect(panelOverflow).toBeLessThanOrEqual(0);
    expect(await smallText(w.page, '[data-testid="assistant-panel"]')).toEqual([]);
    await screenshot(w.page, 'assistant-phone');
    // the citation closes the sheet and shows the section
    await lastReply(w.page).locator('[data-testid="assistant-citation"]').first().click();
    await w.page.waitForFunction(() => location.hash.length > 1);
    await expect(w.page.locator('[data-testid="assistant-panel"]').count()).resolves.toBe(0);
    expect(await horizontalOverflow(w.page)).toBeLessThanOrEqual(0);
    expectNoErrors(w.errors);
    await w.page.close();
  });

  it('signed in: the conversation is kept across a reload, and “Clear conversation” clears it', async () => {
    const name = newName('asker');
    const w = await openPage(desktop, base, '?page=addnorm');
    await w.page.click('[data-testid="account-open"]');
    await w.page.click('[data-testid="account-mode-register"]');
    await w.page.fill('[data-testid="account-username"]', name);
    await w.page.fill('[data-testid="account-password"]', PASSWORD);
    await w.page.click('[data-testid="account-submit"]');
    await expectText(w.page, '[data-testid="account-name"]', name);
    await openPanel(w.page);
    await expect(w.page.locator('[data-testid="assistant-reply"]').count()).resolves.toBe(0);
    const a = await ask(w.page, 'Where does the norm go in pre-LN?');
    expect(a.csrf).toMatch(/.+/);
    const asked = await shownAnswer(w.page);

    await w.page.reload();
    await expectText(w.page, '[data-testid="account-name"]', name);
    const history = w.page.waitForResponse((r) => r.url().endsWith('/api/assistant/history') && r.request().method() === 'GET');
    await openPanel(w.page);
    expect((await history).status()).toBe(200);
    await w.page.waitForFunction(() => document.querySelectorAll('[data-testid="assistant-reply"]').length === 1);
    await expect(w.page.locator('[data-testid="assistant-question"] .turn-text').innerText()).resolves.toBe('Where does the norm go in pre-LN?');
    expect((await shownAnswer(w.page)).text).toBe(asked.text);

    const cleared = w.page.waitForResponse((r) => r.url().endsWith('/api/assistant/history') && r.request().method() === 'DELETE');
    await w.page.click('[data-testid="assistant-clear"]');
    expect((await cleared).status()).toBe(204);
    await expect(w.page.locator('[data-testid="assistant-reply"]').count()).resolves.toBe(0);
    await w.page.reload();
    await expectText(w.page, '[data-testid="account-name"]', name);
    await openPanel(w.page);
    await w.page.waitForFunction(() => !document.querySelector('[data-testid="assistant-panel"] [role="status"]'));
    await expect(w.page.locator('[data-testid="assistant-reply"], [data-testid="assistant-question"]').count()).resolves.toBe(0);
    await w.page.click('[data-testid="account-signout"]');
    await w.page.waitForSelector('[data-testid="account-open"]');
    expectNoErrors(w.errors);
    await w.page.close();
  });

  it('a hostile question is text: no element made from it, no dialog', async () => {
    const w = await openPage(desktop, base, '?page=layernorm');
    const dialogs: string[] = [];
    w.page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await openPanel(w.page);
    const hostile = '<img src=x onerror=alert(1)>';
    await ask(w.page, hostile);
    await expect(w.page.locator('[data-testid="assistant-question"] .turn-text').last().innerText()).resolves.toBe(hostile);
    expect(await w.page.locator('[data-testid="assistant-panel"] img, [data-testid="assistant-panel"] script, [data-testid="assistant-panel"] iframe').count()).toBe(0);
    const onAttrs = await w.page.$$eval('[data-testid="assistant-panel"] *', (els) => els.flatMap((e) => [...e.attributes].filter((a) => a.name.startsWith('on')).map((a) => a.name)));
    expect(onAttrs).toEqual([]);
    await w.page.waitForTimeout(300);
    expect(dialogs).toEqual([]);
    expectNoErrors(w.errors);
    await w.page.close();
  });

  it('too many questions: the server’s Retry-After counted down, asking disabled meanwhile (a server of its own, 1 a minute)', async () => {
    const work = scratch();
    const server = await startServer(blocklabBinary(), work.dir, work.db, ['--assistant-per-minute', '1']);
    try {
      const w = await openPage(desktop, server.baseUrl, '?page=ffn');
      await openPanel(w.page);
      await ask(w.page, 'What does the FFN do?');
      const refused = w.page.waitForResponse((r) => r.url().endsWith('/api/assistant') && r.status() === 429);
      await w.page.fill('[data-testid="assistant-input"]', 'And the activation?');
      await w.page.press('[data-testid="assistant-input"]', 'Enter');
      const retryAfter = Number((await refused).headers()['retry-after']);
      expect(retryAfter).toBeGreaterThan(0);
      await w.page.waitForSelector('[data-testid="assistant-wait"]');
      const said = Number(/(\d+) s/.exec(await w.page.innerText('[data-testid="assistant-wait-left"]'))?.[1]);
      expect(said).toBeLessThanOrEqual(retryAfter);
      await expect(w.page.innerText('[data-testid="assistant-wait"]')).resolves.toMatch(/^Too many questions — try again in \d+ s\. \(assistant: expected at most 1 questions? a minute/);
      await expect(w.page.isDisabled('[data-testid="assistant-send"]')).resolves.toBe(true);
      // the question is back in the box, the transcript as it was
      expect(await w.page.inputValue('[data-testid="assistant-input"]')).toBe('And the activation?');
      await expect(w.page.locator('[data-testid="assistant-reply"]').count()).resolves.toBe(1);
      if (said > 1) {
        await w.page.waitForFunction((n) => Number(/(\d+) s/.exec(document.querySelector('[data-testid="assistant-wait-left"]')?.textContent ?? '')?.[1]) < n, said, { timeout: 3000 });
      }
      await screenshot(w.page, 'assistant-429');
      expectNoErrors(w.errors, [/status of 429/]);
      await w.page.close();
    } finally {
      await server.stop();
      work.remove();
    }
  });
});
