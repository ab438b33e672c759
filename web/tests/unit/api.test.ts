import { afterEach, describe, expect, it } from 'vitest';
import { ApiRefusal, describeError, parseRetryAfter, postJson, refusalOf, setFetch, getJson } from '../../src/lib/api';

afterEach(() => setFetch((i, init) => fetch(i, init)));

describe('API refusals', () => {
  it('reads the {"error": {code, message, field}} body', async () => {
    const res = new Response(JSON.stringify({ error: { code: 'bad_request', message: 'x: expected rows of width 64, got "3 columns"', field: 'x' } }), { status: 400 });
    const e = await refusalOf(res);
    expect(e).toBeInstanceOf(ApiRefusal);
    expect([e.status, e.code, e.field, e.message]).toEqual([400, 'bad_request', 'x', 'x: expected rows of width 64, got "3 columns"']);
    expect(describeError(e)).toBe('The engine refused the request — x: expected rows of width 64, got "3 columns" (field “x”). [400 bad_request]');
  });
  it('copes with a body that is not the API’s', async () => {
    const e = await refusalOf(new Response('upstream down', { status: 502, statusText: 'Bad Gateway' }));
    expect([e.status, e.code, e.message, e.field]).toEqual([502, 'http_502', 'upstream down', null]);
  });
  it('keeps Retry-After (seconds or an HTTP date) as retryAfter, null without one', async () => {
    const body = JSON.stringify({ error: { code: 'too_many_attempts', message: 'sign-in: too many failed attempts: expected a retry in 42 s', field: null } });
    const e = await refusalOf(new Response(body, { status: 429, headers: { 'Retry-After': '42' } }));
    expect([e.status, e.code, e.retryAfter]).toEqual([429, 'too_many_attempts', 42]);
    expect((await refusalOf(new Response(body, { status: 429 }))).retryAfter).toBeNull();
    expect((await refusalOf(new Response('busy', { status: 503, headers: { 'Retry-After': '5' } }))).retryAfter).toBe(5);
    const now = Date.parse('2026-12-01T10:00:00Z');
    expect(parseRetryAfter('Tue, 01 Dec 2026 10:01:30 GMT', now)).toBe(90);
    expect(parseRetryAfter('Tue, 01 Dec 2026 09:59:00 GMT', now)).toBe(0); // a date gone by: no wait
    expect(parseRetryAfter(' 7 ', now)).toBe(7);
    expect(parseRetryAfter('0', now)).toBe(0);
    for (const bad of ['', '-3', '1.5', 'soon', null]) expect(parseRetryAfter(bad, now)).toBeNull();
  });
  it('says when the server cannot be reached', () => {
    expect(describeError(new TypeError('Failed to fetch'))).toMatch(/could not be reached/);
  });
  it('postJson sends JSON and throws the refusal; getJson reads JSON', async () => {
    let seen: RequestInit | undefined;
    setFetch(async (_u, init) => {
      seen = init;
      return new Response(JSON.stringify({ error: { code: 'too_costly', message: 'x: too costly', field: 'x' } }), { status: 413 });
    });
    await expect(postJson('/api/compute/ffn', { a: 1 })).rejects.toMatchObject({ status: 413, code: 'too_costly' });
    expect(seen?.method).toBe('POST');
    expect(seen?.body).toBe('{"a":1}');
    setFetch(async () => new Response('{"ok":true}', { status: 200 }));
    expect(await getJson('/api/health')).toEqual({ ok: true });
  });
});
