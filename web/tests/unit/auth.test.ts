// The auth store and the one place the CSRF token is added (lib/api.ts's send), with a mocked fetch.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { deleteJson, getJson, postJson, send, setFetch } from '../../src/lib/api';
import { streamEvents } from '../../src/lib/sse';
import { AuthStore, auth } from '../../src/auth.svelte';

interface Seen {
  url: string;
  method: string;
  headers: Headers;
  body: string | null;
}
let seen: Seen[] = [];
type Route = (url: string, method: string, body: string | null) => Response | undefined;
let routes: Route[] = [];

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(status === 204 ? null : JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });
}
const ME = { user: { name: 'ada', role: 'student' }, csrf_token: 'tok-1', registration: 'open' };

beforeEach(() => {
  seen = [];
  routes = [];
  setFetch(async (url, init) => {
    const method = (init?.method ?? 'GET').toUpperCase();
    const body = typeof init?.body === 'string' ? init.body : null;
    seen.push({ url, method, headers: new Headers(init?.headers), body });
    for (const r of routes) {
      const res = r(url, method, body);
      if (res) return res;
    }
    return json(200, {});
  });
});
afterEach(async () => {
  vi.useRealTimers();
  routes = [() => json(204, null)];
  await auth.signOut();
  setFetch((i, init) => fetch(i, init));
});

describe('auth store', () => {
  it('me(): 200 signs in with the user and the csrf token, 401 signs out', async () => {
    const a = new AuthStore();
    routes = [(u) => (u === '/api/auth/me' ? json(200, { ...ME, registration: 'code' }) : undefined)];
    expect(await a.me()).toEqual({ name: 'ada', role: 'student' });
    expect([a.signedIn, a.csrf, a.registration, a.ready, a.isTeacher]).toEqual([true, 'tok-1', 'code', true, false]);
    routes = [(u) => (u === '/api/auth/me' ? json(401, { error: { code: 'unauthenticated', message: 'session: not signed in', field: null } }) : undefined)];
    expect(await a.me()).toBeNull();
    expect([a.signedIn, a.csrf, a.ready]).toEqual([false, null, true]);
  });

  it('me() signed out learns from GET /api/version that registering needs a class code', async () => {
    const a = new AuthStore();
    routes = [
      (u) => (u === '/api/auth/me' ? json(401, { error: { code: 'unauthenticated', message: 'no', field: null } }) : undefined),
      (u) => (u === '/api/version' ? json(200, { version: '0', api: '1', registration: 'code' }) : undefined),
    ];
    expect(await a.me()).toBeNull();
    expect(a.registration).toBe('code');
    expect(seen.map((s) => s.url)).toEqual(['/api/auth/me', '/api/version']);
  });

  it('signIn posts the name and password; a refusal keeps the server’s message and leaves one signed out', async () => {
    const a = new AuthStore();
    routes = [
      (u, m, b) =>
        u === '/api/auth/login' && m === 'POST'
          ? JSON.parse(b!).password === 'right-password'
            ? json(200, { user: { name: 'teach', role: 'teacher' }, csrf_token: 'tok-t' })
            : json(401, { error: { code: 'bad_credentials', message: 'username or password: no such account, or a wrong password', field: null } })
          : undefined,
    ];
    await expect(a.signIn('teach', 'wrong')).rejects.toMatchObject({ status: 401, code: 'bad_credentials', message: /wrong password/ });
    expect(a.signedIn).toBe(false);
    await a.signIn('teach', 'right-password');
    expect([a.user?.name, a.isTeacher, a.csrf]).toEqual(['teach', true, 'tok-t']);
    expect(JSON.parse(seen.at(-1)!.body!)).toEqual({ username: 'teach', password: 'right-password' });
    expect(seen.at(-1)!.headers.get('Content-Type')).toBe('application/json');
  });

  it('register sends class_code only when given, and learns the server wants one from 403 bad_class_code', async () => {
    const a = new AuthStore();
    routes = [(u) => (u === '/api/auth/register' ? json(403, { error: { code: 'bad_class_code', message: 'class_code: expected the class code your teacher gave you', field: 'class_code' } }) : undefined)];
    await expect(a.register('bob', 'password1')).rejects.toMatchObject({ code: 'bad_class_code' });
    expect(JSON.parse(seen.at(-1)!.body!)).toEqual({ username: 'bob', password: 'password1' });
    expect(a.registration).toBe('code');
    routes = [(u) => (u === '/api/auth/register' ? json(201, { user: { name: 'bob', role: 'student' }, csrf_token: 'tok-b' }) : undefined)];
    await a.register('bob', 'password1', ' K7-Q2 ');
    expect(JSON.parse(seen.at(-1)!.body!)).toEqual({ username: 'bob', password: 'password1', class_code: 'K7-Q2' });
    expect(a.csrf).toBe('tok-b');
  });

  it('a throttled sign-in (429 + Retry-After) counts down for that account name, then lets it try again', async () => {
    vi.useFakeTimers();
    const a = new AuthStore();
    let throttled = true;
    routes = [
      (u) =>
        u === '/api/auth/login'
          ? throttled
            ? json(429, { error: { code: 'too_many_attempts', message: 'sign-in: too many failed attempts: expected a retry in 42 s', field: null } }, { 'Retry-After': '42' })
            : json(200, ME)
          : undefined,
    ];
    await expect(a.signIn('Ada', 'password1')).rejects.toMatchObject({ status: 429, code: 'too_many_attempts', retryAfter: 42 });
    expect([a.waitFor('ada'), a.waitFor(' ADA '), a.waitFor('bob'), a.signInWaitName]).toEqual([42, 42, 0, 'ada']);
    await vi.advanceTimersByTimeAsync(12_000);
    expect(a.waitFor('ada')).toBe(30);
    await vi.advanceTimersByTimeAsync(30_000);
    expect([a.waitFor('ada'), a.signInWait.active, a.signInWaitName]).toEqual([0, false, null]);
    // a 429 without Retry-After: no countdown (the panel says "wait a little")
    routes = [(u) => (u === '/api/auth/login' ? json(429, { error: { code: 'too_many_attempts', message: 'later', field: null } }) : undefined)];
    await expect(a.signIn('ada', 'password1')).rejects.toMatchObject({ status: 429, retryAfter: null });
    expect(a.waitFor('ada')).toBe(0);
    // a success ends a wait that was running
    routes = [(u) => (u === '/api/auth/login' ? (throttled ? json(429, { error: { code: 'too_many_attempts', message: 'm', field: null } }, { 'Retry-After': '5' }) : json(200, ME)) : undefined)];
    await expect(a.signIn('ada', 'password1')).rejects.toMatchObject({ retryAfter: 5 });
    throttled = false;
    await a.signIn('eve', 'password1');
    expect([a.signInWait.active, a.waitFor('ada')]).toEqual([false, 0]);
  });

  it('makeClassCode (teachers) posts {hours} with the CSRF token and answers the code', async () => {
    const a = new AuthStore();
    routes = [
      (u) => (u === '/api/auth/login' ? json(200, { user: { name: 'teach', role: 'teacher' }, csrf_token: 'tok-t' }) : undefined),
      (u, m) => (u === '/api/auth/class-codes' && m === 'POST' ? json(201, { class_code: 'K7Q2-M4XP-9RTA', expires_in_s: 86400 }) : undefined),
    ];
    await auth.signIn('teach', 'password1');
    expect(await a.makeClassCode(24)).toEqual({ class_code: 'K7Q2-M4XP-9RTA', expires_in_s: 86400 });
    const sent = seen.at(-1)!;
    expect([sent.url, sent.method, JSON.parse(sent.body!), sent.headers.get('X-CSRF-Token')]).toEqual(['/api/auth/class-codes', 'POST', { hours: 24 }, 'tok-t']);
  });

  it('signOut posts logout with the token, then forgets user and token even if the server fails', async () => {
    const a = new AuthStore();
    routes = [(u) => (u === '/api/auth/login' ? json(200, ME) : u === '/api/auth/logout' ? json(500, { error: { code: 'internal', message: 'boom', field: null } }) : undefined)];
    await a.signIn('ada', 'password1');
    await expect(a.signOut()).rejects.toMatchObject({ status: 500 });
    expect([a.user, a.csrf]).toEqual([null, null]);
  });
});

describe('X-CSRF-Token (lib/api.ts send, fed by the auth store)', () => {
  it('is sent on POST and DELETE only while signed in, never on GET or the event stream', async () => {
    routes = [(u) => (u === '/api/auth/login' ? json(200, ME) : undefined)];
    // signed out: no header anywhere
    await postJson('/api/runs', { steps: 10 });
    await deleteJson('/api/runs/3');
    expect(seen.map((s) => s.headers.get('X-CSRF-Token'))).toEqual([null, null]);

    await auth.signIn('ada', 'password1');
    expect(seen.at(-1)!.headers.get('X-CSRF-Token')).toBeNull(); // the login itself carries no stale token
    seen = [];
    await postJson('/api/runs', { steps: 10 });
    await postJson('/api/comments', { section: 'ffn#position-wise', body: 'hi' });
    routes = [() => json(204, null)];
    expect(await deleteJson('/api/comments/7')).toBeNull(); // 204: no body to read
    routes = [() => json(200, { ok: 1 })];
    await getJson('/api/comments?section=ffn%23position-wise');
    await send('/api/runs/3', { method: 'HEAD' });
    await streamEvents('/api/runs/3/events', () => {}, new AbortController().signal).catch(() => {});
    expect(seen.map((s) => [s.method, s.url, s.headers.get('X-CSRF-Token')])).toEqual([
      ['POST', '/api/runs', 'tok-1'],
      ['POST', '/api/comments', 'tok-1'],
      ['DELETE', '/api/comments/7', 'tok-1'],
      ['GET', '/api/comments?section=ffn%23position-wise', null],
      ['HEAD', '/api/runs/3', null],
      ['GET', '/api/runs/3/events', null],
    ]);
    // the other headers survive
    expect(seen[0].headers.get('Content-Type')).toBe('application/json');

    routes = [() => json(204, null)];
    await auth.signOut();
    expect([seen.at(-1)!.url, seen.at(-1)!.headers.get('X-CSRF-Token')]).toEqual(['/api/auth/logout', 'tok-1']);
    seen = [];
    await postJson('/api/runs', { steps: 10 }).catch(() => {});
    expect(seen[0].headers.get('X-CSRF-Token')).toBeNull();
  });
});
