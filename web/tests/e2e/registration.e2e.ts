// Class-code registration in the browser, on a server of its own: `blocklab serve --registration code` with a
// scratch store, in which the teacher is made with the CLI (`blocklab users add … --role teacher
// --password-file F`). The teacher signs in and makes a code from the header's "Class code" panel (keyboard
// only); a student in another browser is refused without a code and with a wrong one (clear errors, the field
// focused), then registers with the teacher's code typed in lower case.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { launch, openPage, screenshot, type Browser } from './browser';
import { expectNoErrors, expectText, horizontalOverflow } from './helpers';
import { addUser, blocklabBinary, scratch, startServer, type Served } from './server';

const TEACHER = { name: 'ms-lovelace', password: 'class-code-teacher-' + Math.random().toString(36).slice(2, 10) };
const STUDENT = { name: 'pupil-' + Date.now().toString(36).slice(-5), password: 'a-student-password' };

let work: ReturnType<typeof scratch>;
let server: Served;
let base: string;
let teacherBrowser: Browser;
let studentBrowser: Browser;

beforeAll(async () => {
  const binary = blocklabBinary();
  work = scratch('blocklab-web-registration-');
  addUser(binary, work.dir, work.db, TEACHER.name, 'teacher', TEACHER.password);
  server = await startServer(binary, work.dir, work.db, ['--registration', 'code']);
  base = server.baseUrl;
  // Two browsers: cookies do not tell ports apart, and the teacher and the student each need their own session.
  teacherBrowser = await launch();
  studentBrowser = await launch();
});
afterAll(async () => {
  await teacherBrowser?.close();
  await studentBrowser?.close();
  await server?.stop();
  work?.remove();
});

const focused = (page: Page) => page.evaluate(() => document.activeElement?.getAttribute('data-testid') ?? null);

describe('registration with a class code (serve --registration code)', () => {
  it('the teacher makes a code from the header; a student registers with it, and is told clearly without it or with a wrong one', async () => {
    // ---- the teacher, keyboard only
    const t = await openPage(teacherBrowser, base, '?page=ffn');
    await t.page.waitForSelector('[data-testid="account-open"]');
    await t.page.focus('[data-testid="account-open"]');
    await t.page.keyboard.press('Enter');
    await t.page.waitForSelector('[data-testid="account-panel"]');
    await t.page.keyboard.type(TEACHER.name);
    await t.page.keyboard.press('Tab');
    await t.page.keyboard.type(TEACHER.password);
    await t.page.keyboard.press('Enter');
    await expectText(t.page, '[data-testid="account-name"]', TEACHER.name);
    expect(await t.page.textContent('[data-testid="account-role"]')).toBe('teacher');

    await t.page.focus('[data-testid="classcode-open"]');
    expect(await t.page.getAttribute('[data-testid="classcode-open"]', 'aria-expanded')).toBe('false');
    await t.page.keyboard.press('Enter');
    await t.page.waitForSelector('[data-testid="classcode-panel"][role="dialog"]');
    expect(await t.page.getAttribute('[data-testid="classcode-open"]', 'aria-expanded')).toBe('true');
    expect(await focused(t.page)).toBe('classcode-hours'); // focus moves into the panel
    expect(await t.page.getByLabel('Valid for').count()).toBe(1);
    await t.page.keyboard.press('ArrowUp'); // 1 week → 1 day
    expect(await t.page.inputValue('[data-testid="classcode-hours"]')).toBe('24');
    const made = t.page.waitForResponse((r) => r.url().endsWith('/api/auth/class-codes'));
    await t.page.keyboard.press('Tab'); // "Make a code"
    expect(await focused(t.page)).toBe('classcode-make');
    await t.page.keyboard.press('Enter');
    const res = await made;
    expect(res.status()).toBe(201);
    expect(JSON.parse(res.request().postData()!)).toEqual({ hours: 24 });
    expect(res.request().headers()['x-csrf-token']?.length).toBeGreaterThan(10);
    const answer = (await res.json()) as { class_code: string; expires_in_s: number };
    expect(answer.expires_in_s).toBe(24 * 3600);
    await expectText(t.page, '[data-testid="classcode-value"]', answer.class_code);
    const code = answer.class_code;
    expect(code).toMatch(/^[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}$/);
    expect(await t.page.textContent('[data-testid="classcode-result"]')).toMatch(/Valid until .+\. Shown only now/);
    expect(await focused(t.page)).toBe('classcode-copy'); // ready to copy
    // at a phone's width the header and the panel still fit
    await t.page.setViewportSize({ width: 360, height: 740 });
    const box = (await t.page.locator('[data-testid="classcode-panel"]').boundingBox())!;
    expect(box.x).toBeGreaterThanOrEqual(0);
    expect(box.x + box.width).toBeLessThanOrEqual(360);
    expect(await horizontalOverflow(t.page)).toBeLessThanOrEqual(0);
    await screenshot(t.page, 'registration-classcode-phone');
    await t.page.keyboard.press('Escape');
    await t.page.waitForSelector('[data-testid="classcode-panel"]', { state: 'detached' });
    expect(await focused(t.page)).toBe('classcode-open'); // focus back on the button

    // ---- the student, in another browser
    const s = await openPage(studentBrowser, base, '?page=ffn');
    await s.page.click('[data-testid="account-open"]');
    await s.page.click('[data-testid="account-mode-register"]');
    // asked for from the start: GET /api/version says this server registers with a class code
    await s.page.waitForSelector('[data-testid="account-classcode"]');
    await s.page.fill('[data-testid="account-username"]', STUDENT.name);
    await s.page.fill('[data-testid="account-password"]', STUDENT.password);
    // without a code the form does not go: the field is required, and the browser says so
    expect(await s.page.getAttribute('[data-testid="account-classcode"]', 'required')).not.toBeNull();
    expect(await s.page.getByLabel('Class code').count()).toBe(1);
    await s.page.click('[data-testid="account-submit"]');
    expect(await s.page.locator('[data-testid="account-name"]').count()).toBe(0);
    expect(await s.page.evaluate(() => (document.querySelector('[data-testid="account-classcode"]') as HTMLInputElement).validity.valueMissing)).toBe(true);
    // a wrong code: said plainly, with the focus in the field
    await s.page.fill('[data-testid="account-classcode"]', 'AAAA-BBBB-CCCC');
    await s.page.press('[data-testid="account-classcode"]', 'Enter');
    await expectText(s.page, '[data-testid="account-error"]', 'That class code is not valid, or it has expired: check it with your teacher. [bad_class_code]');
    expect(await focused(s.page)).toBe('account-classcode');
    expect(await s.page.getAttribute('[data-testid="account-classcode"]', 'aria-invalid')).toBe('true');
    expect(await s.page.locator('[data-testid="account-name"]').count()).toBe(0);
    await s.page.setViewportSize({ width: 360, height: 740 });
    expect(await horizontalOverflow(s.page)).toBeLessThanOrEqual(0);
    await screenshot(s.page, 'registration-bad-code-phone');
    // the teacher's code, typed in lower case
    await s.page.fill('[data-testid="account-classcode"]', code.toLowerCase());
    await s.page.press('[data-testid="account-classcode"]', 'Enter');
    await expectText(s.page, '[data-testid="account-name"]', STUDENT.name);
    expect(await s.page.textContent('[data-testid="account-role"]')).toBe('student');
    expect(await s.page.locator('[data-testid="classcode-open"]').count()).toBe(0); // students make no codes
    // and the account is real: the student can comment
    await s.page.locator('[data-testid="comments"]').scrollIntoViewIfNeeded();
    await s.page.waitForSelector('[data-testid="comment-form"]');

    expectNoErrors(t.errors);
    expectNoErrors(s.errors, [/status of 403/]);
    await t.page.close();
    await s.page.close();
  });
});
