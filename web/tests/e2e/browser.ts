// Chromium (Debian's) driven by playwright-core: one browser per test file, a fresh empty profile, console
// errors collected per page, screenshots into web/test-results/.
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = process.env.BLOCKLAB_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
export const RESULTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test-results');

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/**
 * A desktop and a phone browser for one test file: launched (and given `setup`) before its tests, handed to
 * `use`, closed after them.
 */
export function withBrowsers(use: (desktop: Browser, phone: Browser) => void, setup?: (b: Browser) => Promise<unknown>): void {
  let desktop: Browser | undefined;
  let phone: Browser | undefined;
  beforeAll(async () => {
    desktop = await launch();
    phone = await launch(PHONE);
    if (setup) for (const b of [desktop, phone]) await setup(b);
    use(desktop, phone);
  });
  afterAll(async () => {
    await desktop?.close();
    await phone?.close();
  });
}

export async function launch(viewport = DESKTOP): Promise<Browser> {
  const profile = mkdtempSync(path.join(os.tmpdir(), 'blocklab-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport,
    acceptDownloads: true,
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export interface WatchedPage {
  page: Page;
  /** console errors and uncaught exceptions seen so far */
  errors: string[];
}

export async function openPage(b: Browser, base: string, search: string): Promise<WatchedPage> {
  const page = await b.context.newPage();
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // Signed out, GET /api/auth/me answers 401 by contract (the app asks it at start); the browser logs that.
    if (/\/api\/auth\/me$/.test(m.location().url) && /status of 401/.test(m.text())) return;
    errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  await page.goto(base + '/' + search, { waitUntil: 'load' });
  return { page, errors };
}

export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
