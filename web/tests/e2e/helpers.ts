// What every browser test does: call the API itself, wait for the page to show the same numbers, check the console.
import { expect } from 'vitest';
import type { Page } from 'playwright-core';
import { fmt } from '../../src/lib/format';

export async function api<T = any>(base: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(base + path, body === undefined ? {} : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${path}: ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

export async function apiStatus(base: string, path: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(base + path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

/** Waits for the page's widget to have no request pending (data-status="ready"). */
export async function waitReady(page: Page, timeout = 20_000): Promise<void> {
  await page.waitForSelector('[data-testid="widget"][data-status="ready"]', { timeout });
}

/** The shown text of a number (without its tooltip). */
export async function numText(page: Page, testid: string): Promise<string | null> {
  return page.evaluate((id) => {
    const el = document.querySelector(`[data-testid="${id}"]`);
    return el ? (el.childNodes[0]?.textContent ?? '') : null;
  }, testid);
}

/**
 * Waits until the number `testid` shows fmt(value) with data-raw = value (the API's number, not a rounding of
 * it); fails naming what was shown.
 */
export async function expectNum(page: Page, testid: string, value: number | null, timeout = 15_000): Promise<void> {
  const text = fmt(value);
  const raw = value === null ? 'null' : String(value);
  try {
    await page.waitForFunction(
      ([id, t, r]) => {
        const el = document.querySelector(`[data-testid="${id}"]`);
        return !!el && el.childNodes[0]?.textContent === t && el.getAttribute('data-raw') === r;
      },
      [testid, text, raw] as const,
      { timeout, polling: 50 },
    );
  } catch {
    const shown = await numText(page, testid);
    const shownRaw = await page.evaluate((id) => document.querySelector(`[data-testid="${id}"]`)?.getAttribute('data-raw') ?? null, testid);
    throw new Error(`${testid}: expected "${text}" (raw ${raw}), the page shows "${shown}" (raw ${shownRaw})`);
  }
}

/** Waits until an element's text (trimmed) equals `text`. */
export async function expectText(page: Page, selector: string, text: string, timeout = 15_000): Promise<void> {
  try {
    await page.waitForFunction(([s, t]) => document.querySelector(s)?.textContent?.trim() === t, [selector, text] as const, { timeout, polling: 50 });
  } catch {
    const shown = await page.evaluate((s) => document.querySelector(s)?.textContent?.trim() ?? null, selector);
    throw new Error(`${selector}: expected "${text}", the page shows "${shown}"`);
  }
}

/** The page's URL parameters. */
export function params(page: Page): URLSearchParams {
  return new URL(page.url()).searchParams;
}

export function expectNoErrors(errors: string[], allowed: RegExp[] = []): void {
  const left = errors.filter((e) => !allowed.some((a) => a.test(e)));
  expect(left, `console errors:\n${left.join('\n')}`).toEqual([]);
}

/** Presses a key n times on the focused element. */
export async function press(page: Page, key: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await page.keyboard.press(key);
}

/** Picks the radio with `value` inside the fieldset [data-testid=group] (a click on its label). */
export async function choose(page: Page, group: string, value: string): Promise<void> {
  await page.locator(`[data-testid="${group}"] input[value="${value}"]`).check();
}

/** The page does not scroll sideways (phone viewport). */
export async function horizontalOverflow(page: Page): Promise<number> {
  return page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
}

/** A table's cells as shown: a number's text without its tooltip, other cells' text. */
export async function tableTexts(page: Page, selector: string): Promise<string[][]> {
  return page.$$eval(`${selector} tbody tr`, (trs) =>
    trs.map((tr) =>
      [...tr.querySelectorAll('td')].map((td) => {
        const num = td.querySelector('.num');
        return (num ? num.childNodes[0]?.textContent : td.textContent)?.trim() ?? '';
      }),
    ),
  );
}
